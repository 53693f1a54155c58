"""`python -m pipeline check [params.yaml]`: validate a params file without running anything."""

import sys

from pipeline.params import ParamsError, load_params


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] != "check":
        print("usage: python -m pipeline check [params.yaml]", file=sys.stderr)
        return 2
    path = argv[1] if len(argv) > 1 else "params.yaml"
    try:
        params = load_params(path)
        from pipeline.family_params import check_family_params  # loads the model library

        check_family_params(params)
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{path}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

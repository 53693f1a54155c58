"""Command line: ``python -m stylegan {generate,mix,truncation,interpolate} --network FILE ...``.

Examples::

    python -m stylegan generate --network G.safetensors --seeds 0-7,10 --psi 0.7 --outdir out
    python -m stylegan mix --network G.safetensors --rows 85,100,75 --cols 55,821,1789 --styles coarse \\
        --out mix.png
    python -m stylegan interpolate --network G.safetensors --seeds 0-3 --frames 24 --space w --out loop.webp
    python -m stylegan import network-snapshot-001000.pkl --out G.safetensors   # + G.json (provenance)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from .devices import resolve_device
from .files import atomic_write_json
from .generate import ANIMATION_FORMATS, NOISE_MODES, Sampler, parse_seeds, to_pil
from .interop import load_official_npz, load_official_pkl
from .serialization import read_network_metadata, save_network


def _seeds(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _psis(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad psi list {text!r}: expected numbers separated by commas"
        ) from None


def _styles(text: str) -> str | list[int]:
    if text in ("coarse", "middle", "fine"):
        return text
    try:
        return parse_seeds(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad styles {text!r}: use coarse, middle, fine or layer indices such as 0-6 or 4,5"
        ) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _device(text: str) -> str:
    return str(resolve_device(text))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stylegan", description="Sample images from a trained StyleGAN generator."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--network", required=True, type=Path, help=".safetensors network or official .npz")
    common.add_argument(
        "--w-avg", type=Path, help="W average file (.safetensors/.npz with 'w_avg') to truncate to"
    )
    common.add_argument("--noise-mode", choices=NOISE_MODES, default="const", help="default const")
    common.add_argument("--class", dest="class_idx", type=int, help="class index for a conditional network")
    common.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")

    generate = commands.add_parser("generate", parents=[common], help="one PNG per seed")
    generate.add_argument("--seeds", type=_seeds, required=True, help="e.g. 0-7,10")
    generate.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1: none)")
    generate.add_argument("--cutoff", type=int, help="truncate only the first N ws")
    generate.add_argument("--outdir", type=Path, required=True)
    generate.add_argument("--batch", type=_positive, default=16, help="images per forward pass (default 16)")

    mix = commands.add_parser("mix", parents=[common], help="a style-mixing grid PNG")
    mix.add_argument("--rows", type=_seeds, required=True, help="row seeds: their ws are kept")
    mix.add_argument("--cols", type=_seeds, required=True, help="column seeds: their styles are mixed in")
    mix.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1: none)")
    mix.add_argument(
        "--styles", type=_styles, default="middle", help="coarse, middle (default), fine or layers, e.g. 0-6"
    )
    mix.add_argument("--out", type=Path, required=True, help="output .png")

    sweep = commands.add_parser("truncation", parents=[common], help="a grid of seeds x psi values")
    sweep.add_argument("--seeds", type=_seeds, required=True)
    sweep.add_argument(
        "--psis", type=_psis, default=[-0.5, 0.0, 0.5, 0.7, 1.0, 1.5], help="e.g. -0.5,0,0.5,1"
    )
    sweep.add_argument("--cutoff", type=int, help="truncate only the first N ws")
    sweep.add_argument("--out", type=Path, required=True, help="output .png")

    interpolate = commands.add_parser("interpolate", parents=[common], help="a looping animation")
    interpolate.add_argument("--seeds", type=_seeds, required=True, help="at least 2 seeds, visited in order")
    interpolate.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1: none)")
    interpolate.add_argument(
        "--frames", type=_positive, default=24, help="frames per transition (default 24)"
    )
    interpolate.add_argument(
        "--space", choices=("z", "w"), default="z", help="slerp in z (default) or lerp in w"
    )
    interpolate.add_argument(
        "--frame-ms", type=_positive, default=40, help="milliseconds per frame (default 40)"
    )
    interpolate.add_argument(
        "--out", type=Path, required=True, help=f"output file: {', '.join(ANIMATION_FORMATS)}"
    )

    importer = commands.add_parser(
        "import", help="an NVIDIA .pkl or official .npz as our network file, with a provenance .json"
    )
    importer.add_argument("source", type=Path, metavar="PATH", help="NVIDIA .pkl (snapshot or TF) or .npz")
    importer.add_argument("--out", type=Path, required=True, help="output .safetensors (.json beside it)")
    importer.add_argument(
        "--network", choices=("G_ema", "G", "D"), default="G_ema", help="default G_ema (an .npz has one G)"
    )
    return parser


def _import(args: argparse.Namespace) -> str:
    """Convert ``args.source`` (read without running code from it) and record where it came from."""
    if not args.source.is_file():
        raise FileNotFoundError(f"no such file: {args.source}")
    if args.source.suffix == ".pkl":
        loaded = load_official_pkl(args.source)
    elif args.source.suffix == ".npz":
        G, D = load_official_npz(args.source)
        loaded = dict(G=G, G_ema=G, D=D, augment_p=None, training_set_kwargs=None)
    else:
        raise ValueError(f"{args.source}: expected an NVIDIA .pkl or an official .npz")
    save_network(args.out, loaded[args.network])
    class_key, init_kwargs = read_network_metadata(args.out)
    sidecar = args.out.with_suffix(".json")
    atomic_write_json(
        sidecar,
        {
            "network": args.network,
            "class": class_key,
            "init_kwargs": init_kwargs,
            "source": {"path": str(args.source.resolve()), "sha256": _sha256(args.source)},
            "augment_p": loaded["augment_p"],
            "training_set_kwargs": loaded["training_set_kwargs"],
        },
    )
    return f"{args.out} and {sidecar}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _run(args: argparse.Namespace) -> str:
    """Do the command; return what was written."""
    if args.command == "import":
        return _import(args)
    G = Sampler.load(args.network, _device(args.device), args.w_avg)
    options = {"noise_mode": args.noise_mode, "class_idx": args.class_idx}
    if args.command == "generate":
        args.outdir.mkdir(parents=True, exist_ok=True)
        with tqdm(total=len(args.seeds), unit="img", desc="generate") as bar:
            for start in range(0, len(args.seeds), args.batch):  # saved as they come: memory stays flat
                seeds = args.seeds[start : start + args.batch]
                images = G.generate(seeds, args.psi, args.cutoff, batch_size=args.batch, **options)
                for seed, image in zip(seeds, images, strict=True):
                    to_pil(image).save(args.outdir / f"seed{seed:04d}.png")
                bar.update(len(seeds))
        return f"{len(args.seeds)} images in {args.outdir}"
    if args.command == "interpolate":
        G.interpolate(
            args.seeds,
            args.out,
            args.frames,
            args.space,
            args.psi,
            frame_ms=args.frame_ms,
            progress=True,
            **options,
        )
        return str(args.out)
    if args.command == "mix":
        grid = G.style_mixing_grid(args.rows, args.cols, args.styles, args.psi, **options)
    else:
        grid = G.truncation_sweep(args.seeds, args.psis, args.cutoff, **options)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    return str(args.out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        written = _run(args)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"{parser.prog} {args.command}: error: {err}\n")
    print(f"wrote {written}", file=sys.stderr)


if __name__ == "__main__":
    main()

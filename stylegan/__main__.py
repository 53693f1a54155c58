"""Command line: ``python -m stylegan {generate,mix,truncation,interpolate} --network FILE ...``.

Examples::

    python -m stylegan generate --network G.safetensors --seeds 0-7,10 --psi 0.7 --outdir out
    python -m stylegan mix --network G.safetensors --rows 85,100,75 --cols 55,821,1789 --styles coarse \\
        --out mix.png
    python -m stylegan interpolate --network G.safetensors --seeds 0-3 --frames 24 --space w --out loop.webp
    python -m stylegan input-video --network G_sg3.safetensors --seed 3 --out moving.gif  # StyleGAN3
    python -m stylegan import network-snapshot-001000.pkl --out G.safetensors   # + G.json (provenance)
    python -m stylegan project --network G.safetensors --target photo.png --out proj --steps 1000 --w-plus
    python -m stylegan edit --network G.safetensors --direction sefa:0 --seeds 0-3 --strength -3..3 \\
        --layers 0-5 --out edit.png
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from .devices import resolve_device
from .directions import edit, resolve_direction
from .files import atomic_write_json
from .generate import ANIMATION_FORMATS, NOISE_MODES, Sampler, image_grid, parse_seeds, to_pil
from .interop import load_official_npz, load_official_pkl
from .metrics.detectors import DetectorUnavailable
from .projector import DISTANCES, load_target, project, write_projection
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
    """The device `--device` names, or a ValueError saying in one line why it cannot be used."""
    try:
        device = resolve_device(text)
    except RuntimeError as err:
        raise ValueError(f"--device {text}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no CUDA device is visible"
            raise ValueError(f"--device {text}: CUDA is not available (torch {torch.__version__}: {build}); "
                             "use --device cpu or auto")  # fmt: skip
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return str(device)


# A value such as `-0.5,0,0.5,1` starts with '-', and argparse takes it for an option (it only accepts a
# single negative number as a value): such a value is attached to its option (`--psis=-0.5,0,0.5,1`).
_NUMBER_LIST = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(,\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)*")


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    argv = list(argv)
    for i in range(len(argv) - 1, 0, -1):
        option = argv[i - 1]
        if option.startswith("--") and "=" not in option and _NUMBER_LIST.fullmatch(argv[i]):
            argv[i - 1 : i + 1] = [f"{option}={argv[i]}"]
    return argv


def _advance(bar: tqdm, n: int) -> None:
    """Count `n` more on `bar`; the last step is drawn by ``close()`` alone, so that the final line is
    written once (a drawn last update and close() would both write it, which logs keep as two lines)."""
    if bar.total is not None and bar.n + n >= bar.total:
        bar.n += n
    else:
        bar.update(n)


def _w_avg_note(args: argparse.Namespace) -> str | None:
    """Which W average truncation goes towards, when it is the network's own (no `--w-avg`)."""
    if args.w_avg is not None:
        return None
    truncating = args.command == "truncation" or getattr(args, "psi", 1.0) != 1.0
    what = "truncating towards" if truncating else "no truncation at psi 1; would truncate towards"
    return (
        f"W average: {what} the network's own (mapping.w_avg, tracked during training); "
        "--w-avg FILE uses another, e.g. the w_avg stage's models/w_avg.safetensors"
    )


def _strengths(text: str) -> list[float]:
    """``A..B`` (7 evenly spaced values from A to B), ``A..B:N`` (N values) or a list ``A,B,C``."""
    try:
        if ".." not in text:
            return [float(part) for part in text.split(",")]
        span, _, count = text.partition(":")
        low, high = (float(end) for end in span.split(".."))
        n = int(count) if count else 7
        if n < 2:
            raise ValueError
        return [low + (high - low) * i / (n - 1) for i in range(n)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad strengths {text!r}: expected A..B, A..B:N (N >= 2 values) or numbers such as -2,0,2"
        ) from None


def _add_projection_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``project`` and ``edit`` subcommands."""
    projector = commands.add_parser(
        "project",
        help="find the ws that reproduce an image; writes PNGs, the ws (.npz) and an animated GIF",
    )
    projector.add_argument(
        "--network", required=True, type=Path, help=".safetensors network or official .npz"
    )
    projector.add_argument(
        "--target",
        required=True,
        type=Path,
        help="image to project: its centred square is resized to the network's resolution",
    )
    projector.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder: target.png, projected.png, projected_w.npz, projection.gif",
    )
    projector.add_argument("--steps", type=_positive, default=1000, help="optimisation steps (default 1000)")
    projector.add_argument(
        "--w-plus", action="store_true", help="optimise one w per layer (W+) instead of one w for all"
    )
    projector.add_argument(
        "--seed", type=int, default=0, help="seed of the W statistics and noise initialisation (default 0)"
    )
    projector.add_argument(
        "--distance",
        choices=("auto", *DISTANCES),
        default="auto",
        help="image distance: NVIDIA's vgg16-lpips (downloaded once), inception-features (offline), or "
        "auto (default): vgg16-lpips when it can be had, else inception-features",
    )
    projector.add_argument(
        "--class", dest="class_idx", type=int, help="class index for a conditional network"
    )
    projector.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")

    editor = commands.add_parser(
        "edit", parents=[common], help="a grid of seeds (rows) moved along a latent direction (columns)"
    )
    # Strengths such as -3..3 start with '-': let this parser take them for values, not options.
    editor._negative_number_matcher = re.compile(r"^-\.?\d")
    editor.add_argument(
        "--direction",
        required=True,
        help="sefa:K or ganspace:K (the K-th direction, from 0) or a .npy file holding one w_dim vector",
    )
    editor.add_argument("--seeds", type=_seeds, required=True, help="one row per seed, e.g. 0-3")
    editor.add_argument(
        "--strength",
        type=_strengths,
        default=_strengths("-3..3"),
        help="one column per strength (multiples of the direction in W): A..B (7 values), A..B:N or "
        "a list such as -2,0,2 (default -3..3)",
    )
    editor.add_argument(
        "--layers",
        type=_styles,
        help="ws layers to move: coarse, middle, fine or indices such as 0-5 (default: all); "
        "sefa:K factorises the styles of these layers",
    )
    editor.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1: none)")
    editor.add_argument("--out", type=Path, required=True, help="output .png")


def _project(args: argparse.Namespace) -> str:
    G = Sampler.load(args.network, _device(args.device))
    target = load_target(args.target, G.resolution, G.network.img_channels)
    distance = None if args.distance == "auto" else args.distance
    try:
        result = project(
            G.network,
            target,
            num_steps=args.steps,
            w_plus=args.w_plus,
            seed=args.seed,
            distance=distance,
            class_idx=args.class_idx,
        )
    except DetectorUnavailable as err:
        raise ValueError(str(err)) from None
    paths = write_projection(G.network, result, args.out)
    print(
        f"distance {result.distance}: {result.final_distance:.4f}, PSNR {result.psnr:.2f} dB", file=sys.stderr
    )
    return ", ".join(str(path) for path in paths)


def _edit(G: Sampler, args: argparse.Namespace) -> str:
    direction = resolve_direction(args.direction, G.network, args.layers).to(G.device)
    ws = G.map(G.latents(args.seeds), args.psi, class_idx=args.class_idx)
    edited = torch.stack([edit(ws, direction, strength, args.layers) for strength in args.strength], dim=1)
    grid = image_grid(G.synthesize(edited.flatten(0, 1), args.noise_mode), cols=len(args.strength))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    return str(args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stylegan", description="Sample images from a trained StyleGAN generator."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--network", required=True, type=Path, help=".safetensors network or official .npz")
    common.add_argument(
        "--w-avg",
        type=Path,
        help="W average file (.safetensors/.npz with 'w_avg') to truncate to (default: the network's own)",
    )
    common.add_argument(
        "--noise-mode", choices=NOISE_MODES, default="const", help="const (default), random or none"
    )
    common.add_argument("--class", dest="class_idx", type=int, help="class index for a conditional network")
    common.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")

    generate = commands.add_parser("generate", parents=[common], help="one PNG per seed")
    generate.add_argument("--seeds", type=_seeds, required=True, help="e.g. 0-7,10")
    generate.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1: none)")
    generate.add_argument("--cutoff", type=int, help="truncate only the first N ws")
    generate.add_argument("--outdir", type=Path, required=True, help="folder for the PNGs (seedNNNN.png)")
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
    sweep.add_argument("--seeds", type=_seeds, required=True, help="one row per seed, e.g. 0-3")
    sweep.add_argument(
        "--psis",
        type=_psis,
        default=[-0.5, 0.0, 0.5, 0.7, 1.0, 1.5],
        help="one column per psi, e.g. -0.5,0,0.5,1 (default -0.5,0,0.5,0.7,1,1.5)",
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

    moving = commands.add_parser(
        "input-video", parents=[common], help="StyleGAN3: one seed while its input translates and rotates"
    )
    moving.add_argument("--seed", type=int, required=True, help="the seed to render")
    moving.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1: none)")
    moving.add_argument("--frames", type=_positive, default=48, help="frames of the loop (default 48)")
    moving.add_argument(
        "--translate", type=float, default=0.25, help="radius of the circular translation, in image units"
    )
    moving.add_argument("--rotate", type=float, default=15.0, help="largest rotation in degrees (default 15)")
    moving.add_argument("--frame-ms", type=_positive, default=40, help="milliseconds per frame (default 40)")
    moving.add_argument(
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
    _add_projection_commands(commands, common)
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
    if loaded[args.network] is None:
        raise ValueError(f"{args.source} holds no {args.network}")
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
    if args.command == "project":
        return _project(args)
    G = Sampler.load(args.network, _device(args.device), args.w_avg)
    if note := _w_avg_note(args):
        print(note, file=sys.stderr)
    options = {"noise_mode": args.noise_mode, "class_idx": args.class_idx}
    if args.command == "edit":
        return _edit(G, args)
    if args.command == "generate":
        args.outdir.mkdir(parents=True, exist_ok=True)
        with tqdm(total=len(args.seeds), unit="img", desc="generate") as bar:
            for start in range(0, len(args.seeds), args.batch):  # saved as they come: memory stays flat
                seeds = args.seeds[start : start + args.batch]
                images = G.generate(seeds, args.psi, args.cutoff, batch_size=args.batch, **options)
                for seed, image in zip(seeds, images, strict=True):
                    to_pil(image).save(args.outdir / f"seed{seed:04d}.png")
                _advance(bar, len(seeds))
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
    if args.command == "input-video":
        if args.out.suffix.lower() not in ANIMATION_FORMATS:
            raise ValueError(f"{args.out}: an animation must end in one of {ANIMATION_FORMATS}")
        frames = G.input_transform_frames(
            args.seed, args.frames, args.translate, args.rotate, args.psi, class_idx=args.class_idx
        )
        images = [to_pil(frame) for frame in frames]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        images[0].save(args.out, save_all=True, append_images=images[1:], duration=args.frame_ms, loop=0)
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
    args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        written = _run(args)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"{parser.prog} {args.command}: error: {err}\n")
    print(f"wrote {written}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Command line: `python -m gpu_worker run [--spec-file PATH]` and `make-tiny-model`."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .contracts import EXIT_FAILED, SPEC_ENV_VAR, JobSpec


def _load_spec(args) -> JobSpec:
    if args.spec_file:
        import json

        return JobSpec.from_dict(json.loads(Path(args.spec_file).read_text()))
    value = os.environ.get(SPEC_ENV_VAR)
    if not value:
        raise SystemExit(f"no job spec: pass --spec-file or set {SPEC_ENV_VAR} (base64 JSON)")
    return JobSpec.from_env_value(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_worker")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one attempt of a training job")
    run.add_argument("--spec-file", help=f"job spec JSON file (default: ${SPEC_ENV_VAR}, base64 JSON)")
    run.add_argument("--work-dir", help="local scratch folder (default: $BRIGHTRUN_WORK_DIR/<job>-<attempt>)")
    tiny = sub.add_parser("make-tiny-model", help="build a tiny Llama model + tokenizer from a dataset")
    tiny.add_argument("--dataset", required=True, help="Bright Run JSON file or normalized JSONL")
    tiny.add_argument("--out", required=True, help="output model directory")
    tiny.add_argument("--vocab-size", type=int, default=4000)
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--layers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("BRIGHTRUN_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    if args.command == "make-tiny-model":
        from .tiny_model import make_tiny_model

        out = make_tiny_model(Path(args.dataset), Path(args.out), vocab_size=args.vocab_size,
                              hidden_size=args.hidden_size, num_layers=args.layers)
        print(out)
        return 0

    try:
        spec = _load_spec(args)
    except (ValueError, OSError) as exc:
        # Without a valid spec there is no callback URL or secret to report to.
        print(f"invalid job spec: {exc}", file=sys.stderr)
        return EXIT_FAILED
    work_dir = Path(args.work_dir) if args.work_dir else None
    if spec.gpu_count > 1 and "WORLD_SIZE" not in os.environ:
        # The pod's entry process becomes torchrun's agent: one rank per GPU, SIGTERM forwarded.
        from .distributed import launch

        return launch(spec, work_dir)
    from .runner import run_job

    return run_job(spec, work_dir)


if __name__ == "__main__":
    sys.exit(main())

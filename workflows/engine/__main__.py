"""Command line: run one workflow file, or serve a folder over the Executions gRPC API.

python -m workflows.engine run FILE [--args JSON] [--env K=V ...]     (--data is the same)
python -m workflows.engine serve DIR --port P [--env K=V ...] [--env-file FILE]
                                     [--project P --location L]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from . import ExecutionCancelled, WorkflowError, WorkflowSyntaxError, load_workflow, run_workflow
from . import serve as serve_folder

DEFAULT_PROJECT = "local-project"
DEFAULT_LOCATION = "us-central1"


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def _env_file(path: Path) -> dict[str, str]:
    env = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{path}:{number}: expected K=V")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workflows.engine")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "serve"):
        sub = commands.add_parser(name)
        sub.add_argument("path", type=Path, help="workflow file" if name == "run" else "folder")
        sub.add_argument("--env", type=_env_pair, action="append", default=[], metavar="K=V")
        sub.add_argument("--env-file", type=Path, help="K=V lines, like a .env file")
        sub.add_argument("--project", default=DEFAULT_PROJECT)
        sub.add_argument("--location", default=DEFAULT_LOCATION)
        if name == "run":
            sub.add_argument(
                "--args", "--data", dest="data", default="", help="the execution argument, as JSON"
            )
        else:
            sub.add_argument("--port", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    env = _env_file(args.env_file) if args.env_file else {}
    env.update(dict(args.env))
    try:
        if args.command == "run":
            return _run(args, env)
        return _serve(args, env)
    except WorkflowSyntaxError as exc:
        sys.stderr.write(f"invalid workflow: {exc}\n")
        return 2


def _run(args: argparse.Namespace, env: dict[str, str]) -> int:
    workflow = load_workflow(args.path)
    try:
        argument = json.loads(args.data) if args.data.strip() else None
    except ValueError as exc:
        sys.stderr.write(f"--data is not valid JSON: {exc}\n")
        return 2
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    try:
        result = run_workflow(
            workflow, argument, env=env, cancel=cancel, project=args.project, location=args.location
        )
    except WorkflowError as exc:
        failure = {"error": exc.error, "context": exc.context}
        sys.stderr.write(json.dumps(failure, indent=2) + "\n")
        return 1
    except (ExecutionCancelled, KeyboardInterrupt):
        sys.stderr.write("cancelled\n")
        return 1
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


def _serve(args: argparse.Namespace, env: dict[str, str]) -> int:
    server = serve_folder(
        args.path, port=args.port, env=env, project=args.project, location=args.location
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sys.stdout.write(f"listening on {server.address}\n")
    sys.stdout.flush()
    stop.wait()
    server.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

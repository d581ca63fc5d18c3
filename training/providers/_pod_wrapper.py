"""Runs one local pod's command and records how it ended. Started by LocalProvider as

    python -I -S _pod_wrapper.py <state dir> <command> [args...]

in a new session, so this process leads the pod's process group. It writes `wrapper.json` (its
pid and start time) before starting the command and `exit.json` when the command ends, so the
outcome is on disk even when the process that launched the pod (a Celery worker) has died.

Standard library only and no site import (-S): it must start fast and must not depend on the
virtual environment the command itself may need.
"""
import json
import os
import signal
import subprocess
import sys
import time


def _write_json(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _start_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def main(argv):
    state_dir, command = argv[1], argv[2:]
    # SIGTERM goes to the whole group; the command decides what to do with it. This process
    # stays alive until the command has ended so that it can record the exit code. A Python
    # handler (not SIG_IGN) so that the command starts with the default disposition.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    pid = os.getpid()
    _write_json(
        os.path.join(state_dir, "wrapper.json"),
        {"pid": pid, "pgid": os.getpgid(0), "start_ticks": _start_ticks(pid), "started": time.time()},
    )
    signum = None
    if os.path.exists(os.path.join(state_dir, "terminated.json")):
        # Terminated while this wrapper was starting (the launcher died mid-launch and the
        # reconciler cleaned up): do not run the command at all.
        _write_json(
            os.path.join(state_dir, "exit.json"),
            {"exit_code": 128 + signal.SIGTERM, "signal": int(signal.SIGTERM), "ended": time.time()},
        )
        return 128 + signal.SIGTERM
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"brightrun pod wrapper: cannot start {command[:1]}: {exc}", file=sys.stderr, flush=True)
        code = 127
    else:
        returncode = child.wait()
        if returncode < 0:
            signum = -returncode
            code = 128 + signum  # the shell's convention
        else:
            code = returncode
    _write_json(
        os.path.join(state_dir, "exit.json"),
        {"exit_code": code, "signal": signum, "ended": time.time()},
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))

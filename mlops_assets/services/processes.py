"""Long-running processes started by one command and stopped by another (`make run`,
`make stop`): each keeps its pid in `<run_dir>/<name>.pid` and its output in `<name>.log`."""
import os
import signal
import subprocess
import time
from pathlib import Path


class BackgroundProcess:
    def __init__(self, name: str, command: list[str], run_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.command = command
        self.run_dir = Path(run_dir)
        self.env = env

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def running_pid(self) -> int | None:
        """The pid if the process runs (and has not exited as a child of ours)."""
        try:
            pid = int(self.pid_file.read_text())
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return None  # our child, exited and now reaped
        except ChildProcessError:
            pass  # not our child: look it up below
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
            return pid
        except ProcessLookupError:
            return None

    def start(self) -> int:
        """Starts the process unless it already runs; returns its pid."""
        pid = self.running_pid()
        if pid is not None:
            return pid
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,  # outlives the command that started it
            )
        self.pid_file.write_text(str(process.pid))
        return process.pid

    def stop(self, timeout_s: float = 15) -> bool:
        """SIGTERM, then SIGKILL after `timeout_s`; returns False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.running_pid() is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

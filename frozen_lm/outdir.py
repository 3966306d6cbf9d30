"""A run's output folder: checked before any work, written through, and never emptied before the new
run has something to put there.

`OutFolder(path, overwrite, resume)` refuses, before any work, a path that is a file, a folder that
holds another run (unless `resume` continues that run, or `overwrite` replaces it), a folder of
other files, and one that cannot be written. Nothing is deleted then: when it replaces a run, the old
run stays whole until the new run saves its first result (its best so far, or the end); that save
rewrites the artifact's files and then removes the old run's files the new one did not write (a
d90.png, say, or its TensorBoard event files). The user's own files in the folder are never touched. Under torch.distributed
(frozen_lm.distributed) process 0 alone checks and writes; the others get the same errors.
"""

from __future__ import annotations

import logging
from pathlib import Path

from frozen_lm import distributed
from frozen_lm.artifact import CONFIG, OWN_DIRS, OWN_FILES
from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)


class OutFolder:
    """Where a run writes its artifact; `save(result)` writes it (and, the first time, finishes
    replacing an earlier run)."""

    def __init__(self, path, overwrite: bool = False, resume: bool = False):
        self.path = Path(path)
        self.stale: dict[str, tuple] = {}  # an earlier run's files (name -> inode, mtime) a save replaces
        distributed.on_main(self._claim, overwrite, resume)

    def _claim(self, overwrite: bool, resume: bool) -> None:
        out = self.path
        if out.exists() and not out.is_dir():
            raise UserError(f"out={out} is a file; give a folder")
        if out.is_dir() and any(out.iterdir()):
            if (out / CONFIG).exists():
                if not (resume or overwrite):
                    raise UserError(f"out={out} already holds a run; give resume= to continue it, overwrite=True to "
                                    "replace it, or another out=")
                if overwrite and not resume:
                    self.stale = {str(p.relative_to(out)): _identity(p) for p in _own(out)}
            elif any(not _is_own(p) and p.suffix != ".tmp" for p in out.iterdir()) or not overwrite:
                raise UserError(f"out={out} is not empty and holds no artifact; give a new or empty folder")
            else:  # what a run left before its first save
                self.stale = {str(p.relative_to(out)): _identity(p) for p in _own(out)}
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test.tmp"
            probe.write_bytes(b"0" * 4096)
            probe.unlink()
        except OSError as e:
            raise UserError(f"out={out} cannot be written ({e.strerror or e}); choose another folder") from None

    def save(self, result) -> Path:
        """Write the result's artifact here; the first save after replacing a run removes that run's
        files the new artifact did not rewrite."""
        path = result.save(self.path)
        if self.stale and distributed.is_main():
            for name, identity in self.stale.items():
                p = self.path / name
                if p.exists() and _identity(p) == identity:  # not rewritten by this save
                    p.unlink()
            for folder in OWN_DIRS:  # (emptied folders of the old run's event files)
                for sub in sorted((self.path / folder).glob("**/"), reverse=True):
                    if sub.is_dir() and not any(sub.iterdir()):
                        sub.rmdir()
            for tmp in self.path.glob("*.tmp"):
                tmp.unlink()
        self.stale = {}
        return path


def _is_own(path: Path) -> bool:
    return path.name in OWN_FILES if path.is_file() else path.name in OWN_DIRS


def _own(out: Path) -> list[Path]:
    """The run's own files in `out`: its artifact files and the files in its own folders."""
    files = [p for p in out.iterdir() if p.is_file() and p.name in OWN_FILES]
    return files + [p for d in OWN_DIRS if (out / d).is_dir() for p in (out / d).rglob("*") if p.is_file()]


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns

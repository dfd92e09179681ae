"""Which source the Dom0 sees: the commit and a digest of the files.

Stdlib only: the same code runs on the host and, against the share, in the
Dom0, which has no git. The host copies the checkout for a run (`snapshot`),
so edits made while the tier runs cannot mix two trees.
"""

from __future__ import annotations

import compileall
import hashlib
import shutil
import subprocess
from pathlib import Path


def host_head(repo: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def read_head(repo: Path) -> str:
    """`git rev-parse HEAD` without git: HEAD, then a loose ref or packed-refs."""
    git = repo / ".git"
    head = (git / "HEAD").read_text().strip()
    if not head.startswith("ref: "):
        return head  # detached
    ref = head.removeprefix("ref: ")
    loose = git / ref
    if loose.is_file():
        return loose.read_text().strip()
    for line in (git / "packed-refs").read_text().splitlines():
        sha, _, name = line.partition(" ")
        if name == ref:
            return sha
    raise LookupError(f"{ref} not found in {git}")


def source_files(repo: Path) -> list[str]:
    """Tracked plus untracked-but-not-ignored files: what a developer means to test."""
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    )
    return sorted({p for p in out.stdout.decode().split("\0") if p and (repo / p).is_file()})


def files_in(tree: Path) -> list[str]:
    """Every file below `tree` except .git, relative and sorted (for a snapshot)."""
    return sorted(
        str(p.relative_to(tree))
        for p in tree.rglob("*")
        if p.is_file() and not p.is_symlink() and ".git" not in p.relative_to(tree).parts[:1]
    )


def tree_digest(root: Path, files: list[str]) -> str:
    h = hashlib.sha256()
    for rel in files:
        data = (root / rel).read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


def snapshot(repo: Path, dest: Path) -> None:
    """Copy the source files and just enough of .git to read HEAD into `dest`.

    Its Python is byte-compiled here, as an install would be: the Dom0 mounts the copy
    read-only, so every vxn and pytest start there would compile each module again
    (seconds under TCG). copy2 keeps the mtimes the .pyc files are checked against.
    """
    files = source_files(repo)
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, dest / rel)
    for tree in ("vxn", "tests"):
        if (dest / tree).is_dir():
            compileall.compile_dir(dest / tree, quiet=1)
    git = repo / ".git"
    (dest / ".git").mkdir()
    for name in ("HEAD", "packed-refs"):
        if (git / name).is_file():
            shutil.copy2(git / name, dest / ".git" / name)
    shutil.copytree(git / "refs", dest / ".git" / "refs")

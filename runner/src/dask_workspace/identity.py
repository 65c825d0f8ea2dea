"""The study's code identity on a results location: resuming with other code is refused.

Every manifest entry records the bundle hash of the run that wrote it, and the location keeps
each hash's file listing (``bundles/<hash>.json``: {path: sha256}) so that a refusal can name the
files that changed. A run resuming a location whose latest entry has another hash stops with
exit 2 unless ``--allow-code-change`` (Dask config ``workspace.runner.allow-code-change``) says
the results already there stay valid.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from dask_workspace.bundle import Bundle, changed_files, short_hash
from dask_workspace.errors import Problem, UsageError

logger = logging.getLogger(__name__)

LISTINGS_DIR = "bundles"
#: At most this many changed files are named in a message.
MAX_NAMED = 10


@dataclass(frozen=True, kw_only=True)
class CodeCheck:
    """How this run's code compares with what the location's results were made with."""

    #: The hash of the latest manifest entry that recorded one; None when nothing is recorded.
    recorded: str | None
    current: str
    #: Changed files when the recorded listing is known, else None.
    changed: list[str] | None

    @property
    def matches(self) -> bool | None:
        """True / False; None when the location records no code hash (nothing to compare)."""
        return None if self.recorded is None else self.recorded == self.current


def recorded_hash(entries: Any) -> str | None:
    """The bundle hash of the newest manifest entry that has one (entries oldest first)."""
    for entry in reversed(list(entries)):
        if getattr(entry, "bundle", None):
            return entry.bundle
    return None


def compare(*, backend: Any, entries: Any, bundle: Bundle) -> CodeCheck:
    recorded = recorded_hash(entries)
    changed = None
    if recorded is not None and recorded != bundle.hash:
        try:
            old = json.loads(backend.read_bytes(f"{LISTINGS_DIR}/{recorded}.json"))
            changed = changed_files(dict(old.get("files", {})), bundle.listing())
        except Exception:  # an older location without listings: say what is known
            logger.debug("no file listing for bundle %s", recorded, exc_info=True)
    return CodeCheck(recorded=recorded, current=bundle.hash, changed=changed)


def refusal(check: CodeCheck, *, results: str, study_dir: str) -> str:
    """The exit-2 message: both hashes, the changed files, the two choices."""
    if check.changed is None:
        what = "(which files changed is not recorded)"
    elif check.changed:
        named = ", ".join(check.changed[:MAX_NAMED])
        more = len(check.changed) - MAX_NAMED
        what = f"changed files: {named}" + (f" and {more} more" if more > 0 else "")
    else:
        what = "(same files)"
    return (
        f"{results} holds results made with other code: bundle {short_hash(check.recorded)} "
        f"there, {short_hash(check.current)} now in {study_dir}; {what}. Choose: a new --results "
        "location for the new code, or --allow-code-change (workspace.runner.allow-code-change) "
        "if the results already there stay valid with it (--retry-failed does that too, to run "
        "failed groups again after a fix). Files that are not code (notes, data the model does "
        "not read) can be left out of the bundle with a .studyignore."
    )


def enforce(
    *, store: Any, bundle: Bundle, allow_code_change: bool, results: str, reason: str = ""
) -> CodeCheck:
    """Refuses (exit 2) a resume with other code unless allowed; records this bundle.

    Raises:
        UsageError: the location's results were made with another bundle and the change is not
            allowed.
    """
    check = compare(backend=store.backend, entries=store.entries, bundle=bundle)
    if check.matches is False:
        message = refusal(check, results=results, study_dir=str(bundle.study_dir))
        if not allow_code_change:
            raise UsageError([Problem("--results", message)])
        logger.warning(
            "code changed since the results in %s were made (%s -> %s%s); going on because of "
            "%s: the groups already persisted stay as they are",
            results,
            short_hash(check.recorded),
            short_hash(check.current),
            "" if not check.changed else f": {', '.join(check.changed[:MAX_NAMED])}",
            reason or "--allow-code-change",
        )
    store.bundle_hash = bundle.hash
    rel = f"{LISTINGS_DIR}/{bundle.hash}.json"
    try:
        if not store.backend.exists(rel):
            doc = {"hash": bundle.hash, "files": bundle.listing()}
            store.backend.write_bytes(rel, json.dumps(doc, indent=1, sort_keys=True).encode())
    except Exception as exc:  # the listing only improves messages; the run goes on
        logger.warning("could not record the bundle's file listing in %s: %s", results, exc)
    return check

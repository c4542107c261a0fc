"""``fetch-kernel``: where a fetched Debian kernel lies, as ``key: value`` text, as shell assignments
(``--shell``, for ``eval``) and as the ``--json`` object ``{"package", "arch", "kver", "root",
"modules", "vmlinuz", "headers"}``."""

from __future__ import annotations

import shlex

TYPE_CHECKING = False  # (typing itself is not imported: fetch-kernel does not otherwise need it)
if TYPE_CHECKING:
    from ..debian import DebianKernel


def fetch_json(k: DebianKernel, headers: str) -> dict[str, str]:
    return {"package": k.package, "arch": k.arch or "", "kver": k.kver, "root": k.root,
            "modules": k.modules_dir, "vmlinuz": k.vmlinuz, "headers": headers}


def fetch_text(k: DebianKernel, headers: str) -> str:
    return "\n".join(f"{key + ':':<10}{val}" for key, val in fetch_json(k, headers).items())


def fetch_shell(k: DebianKernel, headers: str) -> str:
    return "\n".join(f"KMODSIM_{key.upper()}={shlex.quote(val)}" for key, val in fetch_json(k, headers).items())

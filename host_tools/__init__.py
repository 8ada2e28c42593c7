"""Host tools for the EV charger controller: flash, configure, monitor, virtual board."""
import shutil
import sys
from pathlib import Path


def installed_tool(name: str) -> str | None:
    """The command `name` of this virtual environment (beside its python), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)

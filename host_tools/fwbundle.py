"""Build an OCPP firmware bundle: what UpdateFirmware downloads and firmware/evse/ocpp/fw.py
installs.

    python -m host_tools.fwbundle firmware/ OUT.bin --version 0.2.0

The bundle is what `make flash` copies, minus the board file: main.py, boot.py and every .py under
evse/. Its format (firmware/evse/ocpp/bundle.py verifies it):

    EVSEFW1 <manifest length in bytes, decimal>\\n
    <manifest: that many bytes of UTF-8 JSON>
    <the files' bytes, concatenated in manifest order, nothing after>

    manifest = {"version": "0.2.0",
                "files": [{"path": "evse/app.py", "size": 1234, "sha256": "<64 lowercase hex>"}, ...]}

Paths are relative with "/" separators. The firmware installs only main.py, boot.py,
romfs_update.py and .py/.mpy files under evse/; board.json, config.json and data files are never
part of a bundle.

    python -m host_tools.fwbundle firmware/ OUT.bin --version 0.2.0 --romfs esp32-devkitc

builds the bundle for a board that runs its package from a ROMFS image (docs/bring-up.md): the
top-level files and `evse.romfs`, the package compiled for that board's architecture as one image,
which romfs_update.py writes to the partition at the boot after the install.
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

MAGIC = b"EVSEFW1 "
ROMFS_IMAGE = "evse.romfs"   # firmware/romfs_update.py's IMAGE
# In the order the firmware renames them into place: main.py, which imports romfs_update, last.
TOP_LEVEL = ("romfs_update.py", "boot.py", "main.py")
VERSION_MAX = 50       # OCPP 1.6 BootNotification.firmwareVersion is CiString50
MANIFEST_MAX = 8192    # the firmware refuses a longer manifest


def bundle_files(firmware_dir):
    """The paths (relative, posix) a bundle of `firmware_dir` carries, sorted."""
    root = Path(firmware_dir)
    paths = [name for name in TOP_LEVEL if (root / name).is_file()]
    paths += sorted(p.relative_to(root).as_posix() for p in (root / "evse").rglob("*")
                    if p.suffix in (".py", ".mpy") and "__pycache__" not in p.parts)
    return paths


def build(firmware_dir, version, romfs_board=None):
    """The bundle bytes of every firmware file under `firmware_dir`, announced as `version`;
    with `romfs_board` (a board file's name), the package as one ROMFS image for that board."""
    if not 0 < len(version) <= VERSION_MAX or not all(" " <= c <= "~" for c in version):
        raise ValueError(f"version {version!r}: 1 to {VERSION_MAX} printable ASCII characters")
    root = Path(firmware_dir)
    paths = bundle_files(root)
    if not any(p.startswith("evse/") for p in paths):
        raise ValueError(f"{root}: no evse/ package here; give the firmware/ directory of the repo")
    if romfs_board is None:
        blobs = [(root / p).read_bytes() for p in paths]
    else:
        paths, blobs = _romfs_files(root, romfs_board)
    manifest = {"version": version,
                "files": [{"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                          for p, b in zip(paths, blobs)]}
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    if len(raw) > MANIFEST_MAX:
        raise ValueError(f"manifest of {len(raw)} bytes; the firmware accepts at most {MANIFEST_MAX}")
    return MAGIC + b"%d\n" % len(raw) + raw + b"".join(blobs)


def _romfs_files(root, board_name):
    from host_tools.flash import ARCH, FlashError, compile_package, romfs_image
    from host_tools.sim.supervisor import read_board_file
    board, path = read_board_file(board_name)
    if not board.get("hardware", {}).get("romfs_kb"):
        raise ValueError(f"board {board['name']} has no ROMFS partition (hardware.romfs_kb in {path})")
    try:
        files = compile_package(ARCH[board["hal"]], root)
    except FlashError as e:
        raise ValueError(str(e)) from None
    if "evse/__init__.mpy" not in files:
        raise ValueError(f"{root}: no evse/*.py sources to build the ROMFS image from")
    paths = [name for name in TOP_LEVEL if (root / name).is_file()]
    return paths + [ROMFS_IMAGE], [(root / p).read_bytes() for p in paths] + [romfs_image(files)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m host_tools.fwbundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("firmware_dir", help="the firmware/ directory (main.py, boot.py, evse/)")
    parser.add_argument("out", help="the bundle file to write")
    parser.add_argument("--version", required=True, help="the version the bundle installs, e.g. 0.2.0")
    parser.add_argument("--romfs", metavar="BOARD", help="the package as a ROMFS image for this board (its board "
                                                         "file names its architecture and partition)")
    args = parser.parse_args(argv)
    try:
        data = build(args.firmware_dir, args.version, args.romfs)
    except (ValueError, OSError) as e:
        print(f"fwbundle: {e}", file=sys.stderr)
        return 2
    Path(args.out).write_bytes(data)
    what = "a ROMFS image and the top-level files" if args.romfs else f"{len(bundle_files(args.firmware_dir))} files"
    print(f"{args.out}: version {args.version}, {what}, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

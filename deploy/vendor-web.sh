#!/usr/bin/env bash
# Refresh the vendored web assets from npm, exactly as deploy/web-assets.json pins them:
# each tarball is checked against its integrity (sha512) before a file is copied, and
# <into>/VERSION records the package, version, licence and every file's SHA-256.
# Only a maintainer runs this (it needs npm and the registry); a node never does.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null || { echo "vendor-web: npm not found (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import base64, hashlib, json, pathlib, shutil, subprocess, sys, tarfile
work = pathlib.Path(sys.argv[1])
spec = json.loads(pathlib.Path("deploy/web-assets.json").read_text())
for pkg in spec["packages"]:
    name, version = pkg["name"], pkg["version"]
    out = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent", "--pack-destination",
                          str(work)], check=True, capture_output=True, text=True).stdout.split()[-1]
    tarball = work / out
    algo, _, expected = pkg["integrity"].partition("-")
    got = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
    if got != expected:
        sys.exit(f"vendor-web: {name}@{version}: integrity mismatch")
    into = pathlib.Path(pkg["into"])
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    lines = [f"{name} {version} ({pkg['license']}) from npm, {pkg['integrity']}"]
    with tarfile.open(tarball) as tar:
        for rel in pkg["files"]:
            data = tar.extractfile(f"package/{rel}").read()
            # "dist/images/x.png" -> "images/x.png": the CSS finds its images beside it
            target = into / rel.removeprefix("dist/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            lines.append(f"{hashlib.sha256(data).hexdigest()}  {target.relative_to(into)}")
    (into / "VERSION").write_text("\n".join(lines) + "\n")
    print(f"vendor-web: {name}@{version} -> {into}")
PY

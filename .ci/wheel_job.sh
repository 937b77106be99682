#!/usr/bin/env bash
# CI: the package as a site installs it -- a wheel, not editable, in a fresh virtual environment
# on Python 3.10 with numpy 1.26.4 (the official Gadgetron images' pins) -- run from a folder
# outside the repository, so nothing but the installed package can be imported:
# simulate, recon (protocol map and coil file from the wheel), serve + send, serve --chains DIR
# with a site's own chains and coil file, coil-profile on a bottle. docker/Dockerfile installs the
# wheel the same way.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${WHEEL_PYTHON:-python3.10}
if ! "$python" -c "" 2>/dev/null && command -v pyenv >/dev/null; then  # a pyenv shim, not active
    python=$(PYENV_VERSION=$(pyenv versions --bare | grep '^3\.10' | tail -1) pyenv which python3.10)
fi
venv=$repo/.wheel-venv
rm -rf "$repo/dist" "$venv"
"$repo/.venv/bin/pip" wheel --no-deps -q -w "$repo/dist" "$repo"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q "$repo"/dist/sodium_gadgets-*.whl "numpy==1.26.4"
work=$(mktemp -d)
cd "$work"
sg="$venv/bin/sodium-gadgets"
py="$venv/bin/python"
"$py" - <<'PY'
import sys, numpy, gadgets
assert numpy.__version__ == "1.26.4", numpy.__version__
assert "site-packages" in gadgets.__file__, gadgets.__file__
print("wheel job:", sys.version.split()[0], "numpy", numpy.__version__, gadgets.__file__)
PY
"$sg" simulate --list | grep tiny_birdcage > /dev/null
"$sg" chains | grep sodium_auto > /dev/null
"$sg" simulate tiny_birdcage --out raw
"$sg" recon raw/tiny_birdcage.h5 --out rec
test -f rec/series010_0001.dcm && test -f rec/series050_0001.png
port=$("$py" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$sg" serve --port "$port" > serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
"$sg" send raw/tiny_birdcage.h5 --port "$port" --out sent
# a site's own chains folder: its protocol map names a coil file that only it has
mkdir -p site/coils
cp "$("$py" -c 'from gadgets.resources import chains_dir; print(chains_dir())')"/*.xml site/
cp "$("$py" -c 'from gadgets.resources import coils_dir; print(coils_dir())')"/birdcage_3T.json site/coils/our_birdcage.json
cat > site/protocols.toml <<'TOML'
[[protocol]]
match = "sodium_tsc"
chain = "sodium_tsc"
[protocol.set]
tube_class = "saline"
coil_models = "our_birdcage"
TOML
kill $server; wait $server 2>/dev/null || true
"$sg" -v serve --port "$port" --chains site > serve_site.log 2>&1 &
server=$!
"$sg" send raw/tiny_birdcage.h5 --port "$port" --out site_sent
"$py" - <<'PY'
import ismrmrd, numpy as np
def tsc(folder):
    ds = ismrmrd.Dataset(f"{folder}/images.h5", "dataset", create_if_needed=False)
    try:
        return ds.read_image("image_10", 0)
    finally:
        ds.close()
rec, sent, site = tsc("rec"), tsc("sent"), tsc("site_sent")
assert np.array_equal(rec.data, sent.data), "recon and serve + send differ"
assert np.array_equal(site.data, rec.data), "the site's copy of the coil file gives another map"
with open("serve_site.log") as f:
    log = f.read()
assert "site/coils/our_birdcage.json" in log, "the site's coil file was not used"
print("wheel job: recon == serve + send; serve --chains DIR found its coil file")
PY
# installing a new coil on the pinned stack: its bottle measured to the wall (the blur model)
"$sg" simulate tiny_siteb_bottle_birdcage --out raw
"$sg" coil-profile raw/tiny_siteb_bottle_birdcage.h5 --out bottle_coil.json
"$py" - <<'PY'
import json
profile = json.load(open("bottle_coil.json"))["spline_profile"]
assert profile["fit_rms"] < 0.05 and profile["extension_rms"] < 0.1, profile["fit_rms"]
print("wheel job: coil-profile wrote a spline profile, fit RMS", profile["fit_rms"])
PY
echo "wheel job passed (in $work)"

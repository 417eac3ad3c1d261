# Sourced by ci/nvrtc-compile-check.sh and ci/sass-loops.sh: NVIDIA's PyPI wheels of CUDA tools,
# unpacked (no CUDA toolkit, no driver needed).
# nv_wheels DIR VERSION TOOL PACKAGE...: unless DIR/version says VERSION and TOOL (a path under
# DIR) is executable, PACKAGE==VERSION of each package downloaded by pip (from a virtual
# environment: python3-venv; Debian's python3 has no pip of its own) and unpacked into DIR.
nv_wheels() {
  local dir=$1 version=$2 tool=$3 w
  shift 3
  if [ -x "$tool" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  echo "+ pip download ${*/%/==$version} into $dir" >&2
  rm -rf "$dir"
  mkdir -p "$dir/wheels"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$dir/wheels" \
    "${@/%/==$version}"
  for w in "$dir"/wheels/*.whl; do
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$w" "$dir"
  done
  chmod +x "$tool"
  echo "$version" >"$dir/version"
  rm -rf "$dir/wheels" "$dir/venv"
}

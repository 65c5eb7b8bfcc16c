# Sourced by tools/serve and tools/test: installs what a fresh Debian 12 or Ubuntu machine
# lacks. Idempotent and quiet when everything is already there.

# Debian packages: the C libraries CShims links (liburing, libnuma, ISA-L, zlib), and fio, which
# the benchmarks and the reactor's tests measure against.
GRANARY_APT_PACKAGES="liburing-dev libnuma-dev libisal-dev zlib1g-dev libjemalloc-dev pkg-config fio"

granary_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

granary_install_system_packages() {
    local missing=""
    for package in $GRANARY_APT_PACKAGES "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
    done
    if [ -n "$missing" ]; then
        echo "setup: installing Debian packages:$missing" >&2
        granary_root apt-get update -qq
        granary_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
}

granary_check_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        echo "setup: Swift 6.1 or later must be on PATH (https://www.swift.org/install/linux/); it is not packaged by Debian." >&2
        exit 1
    fi
}

# Installs the Python packages in a requirements file unless they import already. On a
# Debian python3 (PEP 668: "externally managed"), pip needs --break-system-packages.
granary_install_python_packages() {
    local requirements="$1"
    local modules
    modules=$(sed -E 's/[<>=!~ ;].*//' "$requirements" | grep -v '^#' | grep -v '^$' | paste -sd, -)
    python3 -c "import ${modules}" 2>/dev/null && return 0
    echo "setup: installing Python packages from $requirements" >&2
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r "$requirements" \
        || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            --break-system-packages -r "$requirements"
}

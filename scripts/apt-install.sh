# Sourced by the setup scripts: `apt_install TOOL PACKAGE WHY` installs PACKAGE with
# apt-get (as root, or through sudo), refreshing the package lists once if the first
# try fails. Without apt-get it says how to get PACKAGE and what goes without it.
# Messages start with TOOL; it always returns 0: the caller checks what it has after.
apt_install() {
    local tool="$1" package="$2" without="$3" sudo=""
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$tool: $package is missing and there is no apt-get; install it with your" \
            "package manager ($without)" >&2
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        sudo="sudo"
    fi
    echo "$tool: installing $package"
    $sudo apt-get install -y -qq "$package" >/dev/null 2>&1 \
        || { $sudo apt-get update -qq >/dev/null 2>&1 \
             && $sudo apt-get install -y -qq "$package" >/dev/null 2>&1; } \
        || echo "$tool: could not install $package" >&2
    return 0
}

# Sourced by the scripts: need_package WHAT PACKAGE installs Debian's PACKAGE
# unless WHAT (a command, or an absolute path) is there already. When the
# install fails, the package lists are refreshed and it is tried once more
# (a fresh machine may have none).
need_package() {
    local what="$1" package="$2"
    if [[ "$what" == /* ]]; then
        [[ -e "$what" ]] && return 0
    else
        command -v "$what" >/dev/null && return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "$package" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$package" >/dev/null; }
}

#!/usr/bin/env bash
# Installs a PostgreSQL server (Debian's postgresql package) when none is here: the
# PostgreSQL store's tests and benchmarks start throwaway servers of their own from its
# initdb and postgres (trestle.testing.postgres); then says whether one can start here.
# The package's own cluster is never started: nothing here needs it.
set -uo pipefail

source "$(dirname "$0")/apt-install.sh"

# The directory holding initdb and postgres, looked for as trestle.testing.postgres
# does: beside initdb on PATH (or beside what it links to), else the highest version
# under /usr/lib/postgresql.
find_server_bin() {
    local initdb dir
    if initdb="$(command -v initdb 2>/dev/null)"; then
        for dir in "$(dirname "$initdb")" "$(dirname "$(readlink -f "$initdb")")"; do
            if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
                echo "$dir"
                return 0
            fi
        done
    fi
    while IFS= read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
    return 1
}

# policy-rc.d is Debian's switch for whether a package may start its services: the
# package would otherwise start a cluster on port 5432 as it installs.
install_without_starting() {
    local policy=/usr/sbin/policy-rc.d sudo=""
    if [[ "$(id -u)" != 0 ]]; then
        sudo="sudo"
    fi
    if [[ -e "$policy" ]]; then
        apt_install setup-postgres postgresql "$1"
        return 0
    fi
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy"
    apt_install setup-postgres postgresql "$1"
    $sudo rm -f "$policy"
}

# Creates and starts a server in a temporary directory, with no TCP port, as the
# tests do (as an unprivileged account when we are root: initdb and postgres refuse
# root), then stops and deletes it. Prints the server's log when it fails.
server_starts() {
    local bin="$1" dir log as=() status=0
    dir="$(mktemp -d /tmp/setup-postgres.XXXXXX)" || return 1
    if [[ "$(id -u)" == 0 ]]; then
        local uid=65534 gid=65534
        if id postgres >/dev/null 2>&1; then
            uid="$(id -u postgres)" gid="$(id -g postgres)"
        fi
        chown "$uid:$gid" "$dir"
        as=(setpriv --reuid="$uid" --regid="$gid" --clear-groups)
    fi
    if "${as[@]}" "$bin/initdb" --pgdata="$dir/data" --username=trestle --auth=trust \
        --no-sync >"$dir/initdb.log" 2>&1 \
        && "${as[@]}" "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait \
            --options="-c listen_addresses= -c unix_socket_directories=$dir" \
            start >/dev/null 2>&1; then
        "${as[@]}" "$bin/pg_ctl" --pgdata="$dir/data" --mode=fast --wait stop >/dev/null 2>&1
    else
        status=1
        for log in "$dir/initdb.log" "$dir/server.log"; do
            if [[ -s "$log" ]]; then
                tail -n 15 "$log" >&2
            fi
        done
    fi
    rm -rf "$dir"
    return "$status"
}

if ! find_server_bin >/dev/null; then
    install_without_starting "the PostgreSQL store's tests fail without it"
fi

if ! bin="$(find_server_bin)"; then
    echo "setup-postgres: no PostgreSQL server (initdb and postgres): the PostgreSQL" \
        "store's tests will fail" >&2
elif server_starts "$bin"; then
    echo "setup-postgres: the tests start their own servers from $bin" \
        "($("$bin/postgres" --version))"
else
    echo "setup-postgres: PostgreSQL in $bin cannot start a server here (its log is" \
        "above): the PostgreSQL store's tests will fail" >&2
fi

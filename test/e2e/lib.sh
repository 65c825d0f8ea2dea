# Helpers shared by test/e2e/run.sh (the e2e) and test/e2e/node.sh (the real node), sourced by
# both. The caller defines `fail`, sets WORK (logs go to $WORK/logs) and declares PIDS=() and
# NAMES=() (the processes it started, in order, for its teardown).

# start NAME CMD...: runs a process in the background, logging to $WORK/logs/NAME.log.
start() {
  local name="$1"
  shift
  "$@" >"$WORK/logs/$name.log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}

# alive NAME: fails, naming its log, when a started process has exited.
alive() {
  local i
  for i in "${!NAMES[@]}"; do
    if [[ "${NAMES[$i]}" == "$1" ]] && ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      fail "$1 exited; see $WORK/logs/$1.log"
    fi
  done
}

# project_copy ROOT PROJECT: the Pulumi project in PROJECT as symlinks to everything in ROOT but
# the Pulumi files, with a copy of Pulumi.yaml: `stack init` and `config set` write into the copy,
# never into the repository. The caller copies the stack file it wants.
project_copy() {
  local root="$1" project="$2" entry base
  mkdir -p "$project"
  [[ -f "$root/Pulumi.yaml" ]] || fail "no Pulumi.yaml in $root"
  for entry in "$root"/* "$root"/.[!.]*; do
    base="$(basename "$entry")"
    case "$base" in
      .git | Pulumi.*yaml) ;;
      *) ln -s "$entry" "$project/$base" ;;
    esac
  done
  cp "$root/Pulumi.yaml" "$project/"
}

# shellcheck shell=bash
# Shared by generate-k8s-manifests.sh, deploy.sh and patch.sh: argument parsing, messages, and the one
# helper through which every command that changes something is printed and run (or, in a dry run,
# only printed), so that what --dry-run shows is exactly what a real run runs.

# shellcheck disable=SC2034  # read by the scripts that source this file
{
  REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  DRY_RUN=false     # --dry-run
  CONFIG_ONLY=false # --config-only
  OUTPUT_DIR=""     # --output-dir DIR
  RAMP=""           # --ramp PERCENT
  CLEAN_UP=false    # --clean-up
  ROLLBACK=false    # --rollback
}

script_name() {
  printf '%s' "${0##*/}"
}

die() {
  printf '%s: %s\n' "$(script_name)" "$(visible_text "$1")" >&2
  exit "${2:-1}"
}

# An argument in a message: '--word' as typed when shell_word leaves it plain, else as shell_word quotes it.
shown_argument() {
  local word
  word=$(shell_word "$1")
  if [ "$word" = "$1" ]; then
    printf "'%s'" "$1"
  else
    printf '%s' "$word"
  fi
}

# parse_arguments "OPTIONS" "$@": the options a script accepts (from --dry-run, --config-only, --output-dir,
# --ramp, --clean-up and --rollback), -h/--help (the script's usage function), and nothing else.
# shellcheck disable=SC2034  # the options' variables are read by the scripts
parse_arguments() {
  local accepted=" $1 "
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      -h | --help)
        usage
        exit 0
        ;;
      --output-dir=*) set -- --output-dir "${1#*=}" "${@:2}" ;;
      --ramp=*) set -- --ramp "${1#*=}" "${@:2}" ;;
    esac
    case $accepted in
      *" $1 "*) ;;
      *) die "unknown argument $(shown_argument "$1"); see --help" 2 ;;
    esac
    case $1 in
      --dry-run) DRY_RUN=true ;;
      --config-only) CONFIG_ONLY=true ;;
      --output-dir)
        [ $# -ge 2 ] || die "--output-dir needs a directory" 2
        OUTPUT_DIR=$2
        shift
        ;;
      --ramp) # its value is checked with the configuration (deploy/plan.py)
        [ $# -ge 2 ] || die "--ramp needs a whole percentage from 1 to 100" 2
        RAMP=$2
        shift
        ;;
      --clean-up) CLEAN_UP=true ;;
      --rollback) ROLLBACK=true ;;
    esac
    shift
  done
}

# Everything the scripts print for a person to copy goes through shell_word, so that a value holding $(...),
# backticks, ';' or an escape character neither runs when the command is pasted nor acts on the terminal
# (deploy/quoting.py does the same for the Python side). Under LC_ALL=C (whatever the user's locale):
#   plain      when it holds only [A-Za-z0-9_./:,@+=%-]
#   'quoted'   when it is printable ASCII without a single quote
#   $'...'     otherwise (printf %q): every control character and every byte outside ASCII as an escape.

# shell_word VALUE: one argument as it can be pasted back into a shell.
shell_word() {
  local LC_ALL=C
  if [[ $1 =~ ^[A-Za-z0-9_./:,@+=%-]+$ ]]; then
    printf '%s' "$1"
  elif [[ $1 =~ ^[[:print:]]+$ ]] && [[ $1 != *"'"* ]]; then
    printf "'%s'" "$1"
  else
    printf '%q' "$1"
  fi
}

# command_line WORD...: a command for a person to copy, each word quoted by shell_word.
command_line() {
  local word line=""
  for word in "$@"; do
    line="$line${line:+ }$(shell_word "$word")"
  done
  printf '%s' "$line"
}

# shell_word_or VALUE PLACEHOLDER: VALUE quoted, or when it is empty the PLACEHOLDER (such as <resource group>)
# as it is, for the person to fill in.
shell_word_or() {
  if [ -n "$1" ]; then
    shell_word "$1"
  else
    printf '%s' "$2"
  fi
}

# visible_text TEXT: a message with every control character but newline and tab replaced by '?': C0, DEL, and
# the C1 controls U+0080..U+009F as UTF-8 (a terminal may read U+009B as CSI). The last guard before a hint or
# a problem reaches the terminal; the values in it are quoted by shell_word already.
visible_text() {
  local LC_ALL=C text=$1
  text=${text//[$'\x01'-$'\x08'$'\x0b'-$'\x1f'$'\x7f']/?}
  printf '%s' "${text//$'\xc2'[$'\x80'-$'\x9f']/?}"
}

# print_command COMMAND [| COMMAND...]: the command line run prints, "|" (run_pipeline's pipe) as a pipe.
print_command() {
  local word line="  \$"
  for word in "$@"; do
    if [ "$word" = "|" ]; then
      line="$line |"
    else
      line="$line $(shell_word "$word")"
    fi
  done
  printf '%s\n' "$line"
}

# A command, or commands separated by a "|" argument, run without a shell in between: each one gets the
# output of the one before on stdin, and runs only if that one succeeded (so a secret such as a token
# travels through a pipe, and nothing runs after a failure).
run_pipeline() {
  local position=1 word output
  for word in "$@"; do
    if [ "$word" = "|" ]; then
      output=$("${@:1:position-1}") || return
      printf '%s\n' "$output" | run_pipeline "${@:position+1}"
      return
    fi
    position=$((position + 1))
  done
  "$@"
}

# run COMMAND [| COMMAND...]: print the command line, then run it unless this is a dry run.
run() {
  print_command "$@"
  $DRY_RUN || run_pipeline "$@"
}

# run_local COMMAND: print and run it even in a dry run; for commands that change nothing outside this
# machine: rendering files, and read-only checks such as replaying open workflows (rollout.py gate).
run_local() {
  print_command "$@"
  run_pipeline "$@"
}

# check EXPECTED COMMAND...: print a read-only command and run it (not in a dry run, which assumes it
# passes); it passes when it succeeds and, unless EXPECTED is empty, prints a line equal to EXPECTED.
check() {
  local expected=$1 output
  shift
  print_command "$@"
  $DRY_RUN && return 0
  output=$("$@" 2>/dev/null) || return 1
  [ -z "$expected" ] || grep -qxF -- "$expected" <<<"$output"
}

# capture NAME COMMAND...: print a read-only lookup and run it, putting what it prints into the variable NAME
# (a dry run only prints it and leaves NAME empty); fails when the command fails.
capture() {
  local name=$1 output=""
  shift
  print_command "$@"
  $DRY_RUN || output=$("$@") || return
  printf -v "$name" '%s' "$output"
}

# found COMMAND...: print a read-only lookup and run it; it finds something when it succeeds (a dry run
# assumes it finds nothing, so that it shows what would follow).
found() {
  print_command "$@"
  ! $DRY_RUN && "$@" >/dev/null 2>&1
}

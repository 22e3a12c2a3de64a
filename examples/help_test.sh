#!/bin/sh
# Every binary of examples/: --help lists its own flags (and not Abseil's), --version prints
# "<name> <the VERSION file>".
# Arguments: the VERSION file, then the binaries.
set -u
version=$(cat "$1")
shift
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# The flags each binary's --help must list (its main ones, as the README documents them).
want_flags() {
  case $1 in
    agent) echo "config check_config listen advertise_address migration_address http_host http_port scheduler_timeout vm_cgroup_parent vm_memory_overhead_mib qemu_user migration_tls_cert migration_tls_key ready_file v log_format tls_cert tls_key tls_ca insecure" ;;
    scheduler) echo "store data_dir etcd_prefix etcd_ca etcd_cert etcd_key etcd_timeout lease_ttl \
advertise etcd_refuse_after etcd_compact listen metrics_port watermark compute_unit migration_policy \
balance_interval recovery_grace ready_file migration_timeout disk_reserve tls_cert tls_key tls_ca \
insecure trust_domain max_node_total" ;;
    schedctl) echo "server timeout node vm total compute_unit resources last_permit order o force \
min_cu max_cu watermark tls_cert tls_key tls_ca insecure" ;;
    ledgerctl) echo "data_dir at" ;;
    monitor) echo "listen cgroup watch memory_bytes lfc_resizer postgres_conninfo config \
threshold_fraction sample_interval metrics_interval lfc_windows_file http_host http_port tls_cert tls_key tls_ca \
insecure trust_domain memory_high lfc_windows_function agent_token_file" ;;
    simulate) echo "vms nodes node_cpus node_memory_gib duration step workload trace config \
compare_config seed threads summary_json series_csv series_interval step_every_vm placement \
lfc_metrics_interval" ;;
    demo) echo "duration dir postgres verbose" ;;
    autoscale-goal) echo "v log_format" ;;
    memstep) echo "prefill-kib timeout-ms" ;;
    vmctl) echo "spec runtime_dir resume qemu_user timeout" ;;
    *) echo "UNKNOWN" ;;
  esac
}

for bin in "$@"; do
  name=$(basename "$bin")
  flags=$(want_flags "$name")
  if [ "$flags" = UNKNOWN ]; then
    fail "$name: no expected flags listed in help_test.sh"
    continue
  fi
  # Abseil's --help exits 1; what matters is what it prints.
  help=$("$bin" --help 2>&1)
  for flag in $flags; do
    echo "$help" | grep -q -- "--$flag " || fail "$name --help does not list --$flag:
$help"
  done
  for internal in flagfile fromenv tryfromenv undefok; do
    if echo "$help" | grep -q -- "--$internal "; then fail "$name --help lists Abseil's --$internal"; fi
  done
  out=$("$bin" --version 2>&1)
  rc=$?
  [ $rc -eq 0 ] || fail "$name --version exited $rc"
  [ "$out" = "$name $version" ] || fail "$name --version printed '$out', want '$name $version'"
done

[ $failures -eq 0 ] || exit 1
echo "PASS: $# binaries"

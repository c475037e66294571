#!/usr/bin/env python3
"""What a backup with the RAM state costs a working guest (issue 13).

  bench/bench-vmstate.py <qemu build dir> [memory MiB, default 2048] [rounds]

Boots the guest kit (workload "resume": fswork writing ext4 files with
fsync, files kept dirty in the page cache, a console counter) with the given
RAM, lets it work, then per round backs it up to an archive on /var/tmp:
once without and once with vmstate: true.  Reports:

  pause     the VM's stop for the snapshot (query-migrate "downtime": from
            the stop through saving the device state, RAM write tracking
            and the disks' filters going in, to the resume), and the
            longest gap between counter lines (every 0.1 s) around it
  guest     fswork files acknowledged per second and the median/max fsync
            latency: before the backup, and while the RAM state is saved
  RAM       the state stream's bytes and the archive's growth over the
            backup without state (zero pages cost only their stream header)
  RSS       QEMU's resident memory before and its peak (VmHWM) after

Prints one markdown table; TCG unless the kit boots under KVM.
"""

import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'guest'))
from guestvm import Guest, build_kit, choose_accel  # noqa: E402
from livebackup import Env, make_disks  # noqa: E402

MiB = 1024 * 1024


def rss_kib(pid, field):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def dones(guest, t0, t1):
    """(n, [fsync us]) of fswork files acknowledged between host times"""
    lat = []
    with guest.cond:
        for t, line in guest.lines:
            m = line and re.match(r'^DONE \d+ \d+ (\d+)', line)
            if m and t0 <= t < t1:
                lat.append(int(m.group(1)))
    return lat


def counter_gap(guest, t0, t1):
    """The longest time between two counter lines in [t0, t1] (s)"""
    times = [t for t, line in list(guest.lines)
             if line and line.startswith('VMATEST COUNT') and t0 <= t <= t1]
    return max((b - a for a, b in zip(times, times[1:])), default=0)


def wait_backup(guest, poll=None):
    while True:
        st = guest.qmp.cmd('query-backup')
        if poll:
            poll(st)
        if st.get('status') != 'active':
            return st
        time.sleep(0.05)


def main():
    build = os.path.abspath(sys.argv[1])
    memory = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    kit = build_kit()
    work = tempfile.mkdtemp(prefix='vma-bench-vmstate.', dir='/var/tmp')
    accel, why = choose_accel(os.path.join(build, 'qemu-system-x86_64'),
                              kit, work)
    if not accel:
        sys.exit(f'the kit does not boot: {why}')
    env = Env(build, os.path.join(build, 'vma'), kit, accel)
    drives = make_disks(env, work)[:1]
    guest = Guest(env.qemu, kit, work, 'bench', accel, drives,
                  {'work': 'resume', 'seed': 7}, memory=memory)
    guest.launch()
    rows = []
    try:
        guest.wait_line(r'^VMATEST RESUME', 300)
        time.sleep(10)
        pid = guest.proc.pid
        for r in range(rounds):
            plain = os.path.join(work, f'plain{r}.vma')
            t = time.monotonic()
            guest.qmp.cmd('backup', backup_file=plain)
            st_plain = wait_backup(guest)
            t_plain = time.monotonic() - t
            time.sleep(5)

            archive = os.path.join(work, f'state{r}.vma')
            rss0 = rss_kib(pid, 'VmRSS')
            t_before = time.monotonic() - 5
            t0 = time.monotonic()
            guest.qmp.cmd('backup', backup_file=archive, vmstate=True)
            ram_end = []

            def poll(st):
                if not ram_end and st.get('vmstate-ram-remaining') == 0 \
                        and st.get('vmstate-bytes'):
                    ram_end.append(time.monotonic())
            st = wait_backup(guest, poll)
            t1 = ram_end[0] if ram_end else time.monotonic()
            t_state = time.monotonic() - t0
            mig = guest.qmp.cmd('query-migrate')
            rss1 = rss_kib(pid, 'VmHWM')
            lat0 = dones(guest, t_before, t0)
            lat1 = dones(guest, t0, t1)
            rows.append({
                'status': st['status'],
                'downtime_ms': mig.get('downtime'),
                'gap_s': counter_gap(guest, t0 - 1, t0 + 5),
                'rate0': len(lat0) / 5,
                'rate1': len(lat1) / max(t1 - t0, 1e-3),
                'lat0': (statistics.median(lat0) if lat0 else 0, max(lat0,
                                                                     default=0)),
                'lat1': (statistics.median(lat1) if lat1 else 0, max(lat1,
                                                                     default=0)),
                'ram_s': t1 - t0,
                'state_bytes': st.get('vmstate-bytes', 0),
                'grow': st['archive-size'] - st_plain['archive-size'],
                'rss0': rss0, 'rss1': rss1,
                't_plain': t_plain, 't_state': t_state,
            })
            os.unlink(plain)
            os.unlink(archive)
            time.sleep(5)
    finally:
        guest.quit()
    print(f'guest: {memory} MiB RAM, {accel}, 1 vCPU, ext4 on a 160 MiB '
          f'qcow2 (virtio-blk, iothread), archives on /var/tmp')
    print()
    print('| round | status | pause (downtime) | longest counter gap | '
          'guest files/s before / during RAM | fsync median/max ms before / '
          'during | RAM part | state stream | archive growth | QEMU RSS '
          'before / peak | backup time without / with state |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for i, r in enumerate(rows):
        print(f"| {i + 1} | {r['status']} | {r['downtime_ms']} ms | "
              f"{r['gap_s'] * 1000:.0f} ms | {r['rate0']:.1f} / "
              f"{r['rate1']:.1f} | {r['lat0'][0] / 1000:.1f}/"
              f"{r['lat0'][1] / 1000:.1f} / {r['lat1'][0] / 1000:.1f}/"
              f"{r['lat1'][1] / 1000:.1f} | {r['ram_s']:.1f} s | "
              f"{r['state_bytes'] / MiB:.1f} MiB | {r['grow'] / MiB:.1f} MiB "
              f"| {r['rss0'] // 1024} / {r['rss1'] // 1024} MiB | "
              f"{r['t_plain']:.1f} s / {r['t_state']:.1f} s |")


if __name__ == '__main__':
    main()

"""Boot and drive guests of the guest kit (tests/guest/build-kit.sh).

A Guest is one qemu-system-x86_64 process booting the kit's kernel and
initramfs; the host talks to it over QMP (a unix socket) and reads its
serial console (another unix socket) line by line.  Python stdlib only.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class QMPError(Exception):
    pass


def build_kit():
    """Run build-kit.sh (cached: instant when nothing changed); the kit dir"""
    out = subprocess.run([os.path.join(ROOT, 'tests/guest/build-kit.sh')],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return re.search(r'^kit dir: (.*)$', out, re.M).group(1)


class QMP:
    """A minimal QMP client on a connected unix socket"""

    def __init__(self, sock):
        self.sock = sock
        self.rfile = sock.makefile('rb')
        self.events = []
        self._read()                      # the greeting
        self.cmd('qmp_capabilities')

    def _read(self):
        line = self.rfile.readline()
        if not line:
            raise QMPError('QEMU closed the QMP connection')
        return json.loads(line)

    def cmd(self, name, fds=None, **args):
        """Execute a command; its return value, or QMPError"""
        msg = {'execute': name}
        if args:
            msg['arguments'] = {k.replace('_', '-'): v
                                for k, v in args.items()}
        data = json.dumps(msg).encode() + b'\n'
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)
        while True:
            resp = self._read()
            if 'event' in resp:
                self.events.append(resp)
            elif 'error' in resp:
                raise QMPError(f"{name}: {resp['error'].get('desc')}")
            elif 'return' in resp:
                return resp['return']


class Guest:
    """One VM booting the kit.  drives: list of (id, path, format, bus)
    with bus 'virtio' (virtio-blk in iothread io0) or 'scsi' (scsi-hd on a
    virtio-scsi controller, scsihw0: in the main loop, or in iothread io0
    with scsi_iothread=True)."""

    def __init__(self, qemu, kit, workdir, name, accel, drives, work,
                 echo=None, memory=256, scsi_iothread=False):
        self.qemu, self.kit, self.workdir, self.name = qemu, kit, workdir, name
        self.accel, self.drives, self.work = accel, drives, work
        self.echo = echo                  # called with each console line
        self.memory = memory
        self.scsi_iothread = scsi_iothread
        self.lines = []                   # (host monotonic time, line)
        self.cond = threading.Condition()
        self.proc = None
        self.qmp = None
        self.con = None
        self.stderr = None
        self.log = os.path.join(workdir, f'{name}.console')

    def args(self, qmp_path, con_path):
        cmdline = ('console=ttyS0 panic=-1 loglevel=4 ' +
                   ' '.join(f'vmatest.{k}={v}' for k, v in self.work.items()))
        a = [self.qemu, '-M', 'pc', '-accel', self.accel, '-m',
             str(self.memory), '-smp', '1', '-nodefaults', '-display', 'none',
             '-no-reboot', '-kernel', os.path.join(self.kit, 'vmlinuz'),
             '-initrd', os.path.join(self.kit, 'initrd.img'),
             '-append', cmdline,
             '-chardev', f'socket,id=qmp,path={qmp_path}',
             '-mon', 'chardev=qmp,mode=control',
             '-chardev', f'socket,id=con,path={con_path}',
             '-serial', 'chardev:con',
             '-object', 'iothread,id=io0']
        if any(bus == 'scsi' for _, _, _, bus in self.drives):
            a += ['-device', 'virtio-scsi-pci,id=scsihw0' +
                  (',iothread=io0' if self.scsi_iothread else '')]
        for drive_id, path, fmt, bus in self.drives:
            a += ['-drive', f'if=none,id={drive_id},file={path},format={fmt},'
                  'cache=writeback,discard=unmap']
            if bus == 'virtio':
                a += ['-device',
                      f'virtio-blk-pci,drive={drive_id},iothread=io0']
            else:
                a += ['-device', f'scsi-hd,drive={drive_id},bus=scsihw0.0']
        return a

    def launch(self, timeout=30):
        # QEMU connects to sockets we listen on: nothing the guest prints is
        # lost, and no polling for sockets to appear
        socks = {}
        for what in ('qmp', 'con'):
            path = os.path.join(self.workdir, f'{self.name}.{what}')
            if os.path.exists(path):
                os.unlink(path)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(1)
            s.settimeout(timeout)
            socks[what] = (s, path)
        self.stderr = open(os.path.join(self.workdir, f'{self.name}.stderr'),
                           'w')
        self.proc = subprocess.Popen(
            self.args(socks['qmp'][1], socks['con'][1]),
            stdin=subprocess.DEVNULL, stdout=self.stderr,
            stderr=subprocess.STDOUT)
        try:
            conns = {}
            for what in ('qmp', 'con'):
                conns[what], _ = socks[what][0].accept()
                conns[what].settimeout(None)
        except socket.timeout:
            self.kill()
            raise QMPError(f'{self.name}: QEMU did not connect: '
                           f'{self.stderr_text()}')
        finally:
            for s, path in socks.values():
                s.close()
                os.unlink(path)
        self.con = conns['con']
        threading.Thread(target=self._read_console, args=(conns['con'],),
                         daemon=True).start()
        self.qmp = QMP(conns['qmp'])

    def send_console(self, text):
        """Type text on the guest's serial console"""
        self.con.sendall(text.encode())

    def _read_console(self, conn):
        buf = b''
        with open(self.log, 'w') as log:
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                buf += data
                while b'\n' in buf:
                    raw, buf = buf.split(b'\n', 1)
                    line = raw.decode(errors='replace').rstrip('\r')
                    log.write(line + '\n')
                    if self.echo:
                        self.echo(line)
                    with self.cond:
                        self.lines.append((time.monotonic(), line))
                        self.cond.notify_all()
        with self.cond:
            self.lines.append((time.monotonic(), None))    # EOF
            self.cond.notify_all()

    def wait_line(self, pattern, timeout, start=0):
        """The first console line from index start on matching pattern, as
        (index, match); None on timeout or when the console closed"""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    line = self.lines[i][1]
                    if line is None:
                        return None
                    m = rx.search(line)
                    if m:
                        return i, m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def last_number(self, prefix):
        """The number after the last console line '<prefix> N ...' (0: none)"""
        with self.cond:
            for _, line in reversed(self.lines):
                if line and line.startswith(prefix + ' '):
                    return int(line.split()[1])
        return 0

    def text(self):
        with self.cond:
            return '\n'.join(line for _, line in self.lines if line)

    def stderr_text(self):
        try:
            with open(os.path.join(self.workdir, f'{self.name}.stderr')) as f:
                return f.read().strip()[-2000:]
        except OSError:
            return ''

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.stderr:
            self.stderr.close()

    def quit(self):
        try:
            self.qmp.cmd('quit')
        except (QMPError, OSError):
            pass
        if self.wait_exit(10) is None:
            self.kill()
        self.stderr.close()


def probe(qemu, kit, workdir, accel, timeout):
    """Does the kit boot under accel within timeout seconds?  (ok, why).
    A QEMU that cannot be run at all is an error (OSError), not a
    platform without that accelerator."""
    g = Guest(qemu, kit, workdir, f'probe-{accel}', accel, [],
              {'work': 'probe'})
    start = time.monotonic()
    try:
        g.launch()
    except QMPError as e:
        g.wait_exit(5)
        g.kill()
        return False, f'{accel}: QEMU did not start ({e}): {g.stderr_text()}'
    try:
        if g.wait_line(r'^VMATEST PROBE OK', timeout):
            return True, f'{accel}: booted in {time.monotonic() - start:.1f}s'
        last = [line for _, line in g.lines[-3:] if line]
        return False, (f'{accel}: no boot within {timeout}s (last console: '
                       f'{last!r}; {g.stderr_text()[-300:]!r})')
    finally:
        g.kill()


def choose_accel(qemu, kit, workdir, kvm_timeout=8, tcg_timeout=60):
    """KVM if the kit boots under it quickly, else TCG.  (accel or None,
    explanation)"""
    notes = []
    if os.access('/dev/kvm', os.R_OK | os.W_OK):
        ok, why = probe(qemu, kit, workdir, 'kvm', kvm_timeout)
        if ok:
            return 'kvm', why
        notes.append(why)
    else:
        notes.append('kvm: no usable /dev/kvm')
    ok, why = probe(qemu, kit, workdir, 'tcg', tcg_timeout)
    notes.append(why)
    return ('tcg' if ok else None), '; '.join(notes)


def private_kit_and_accel(build, work):
    """Copy the kit into @work (a rebuild of the shared one, by another
    checkout changing its inputs, removes the old one while we boot it) and
    choose the accelerator; prints both.  (kit, accel or None, explanation);
    OSError when QEMU cannot run at all."""
    shared_kit = build_kit()
    kit = os.path.join(work, 'kit')
    shutil.copytree(shared_kit, kit)
    accel, why = choose_accel(os.path.join(build, 'qemu-system-x86_64'),
                              kit, work)
    print(f'guest kit {shared_kit} (copied); accelerator: '
          f'{accel or "none"} ({why})', flush=True)
    return kit, accel, why


# Reporting, shared by the test scripts

def report_tests(names, ok, accel, why):
    """One line per test (ok / FAIL, or SKIP with @why when no accelerator
    boots the guest); returns (passed, failed, skipped)"""
    passed = failed = skipped = 0
    for name in names:
        if not accel:
            print(f'SKIP {name}: no accelerator boots the guest ({why})')
            skipped += 1
        elif ok.get(name):
            print(f'ok {name}')
            passed += 1
        else:
            print(f'FAIL {name}')
            failed += 1
    return passed, failed, skipped


def print_totals(passed, failed, skipped):
    """The last line run-qemu-tests.sh reads"""
    if skipped:
        print(f'{passed} passed, {failed} failed, {skipped} skipped')
    else:
        print(f'{passed} passed, {failed} failed')

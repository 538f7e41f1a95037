#!/usr/bin/env python3
"""tools/top.py: a live view of a running preforkd, like `redis-cli --stat` or htop.

Run it through `tools/preforkctl top`, which finds GET /_stats on the
configuration's first http listener. Every interval it reads /_stats and
redraws one screen: the master, a line per worker (rates, p50/p99 latency
over the last interval, RSS, heartbeat age), the store, the bus and
persistence. Rates and latencies are differences between two samples, so
the first frame shows them as "-".

On a terminal it uses the alternate screen with the cursor hidden and
restores both (and the terminal modes) on exit: q or Ctrl-C. When stdout is
not a terminal it prints a plain frame every interval. --once prints one
plain frame and exits (with --interval > 0 it takes two samples that far
apart, so the rates are filled in).

Python 3 standard library only (Debian 12's python3).
Exit codes: 0 ok, 1 failure, 3 (--once) the server is not reachable.
"""

import argparse
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import sys
import termios
import time
import tty
import urllib.error
import urllib.request

E_NOTRUNNING = 3
FETCH_TIMEOUT_S = 2.0

# ------------------------------------------------------------- formatting


def _scaled(v, units, base):
    """v in the largest unit that keeps it under 1000, with 3 significant digits."""
    for i, unit in enumerate(units):
        x = v / base ** i
        if i == 0 and float(x).is_integer() and abs(x) < 1000:
            return f"{int(x)}{unit}"
        if abs(x) < 9.995:
            return f"{x:.2f}{unit}"
        if abs(x) < 99.95:
            return f"{x:.1f}{unit}"
        if abs(x) < 999.5 or i + 1 == len(units):
            return f"{x:.0f}{unit}"
    raise AssertionError("unreachable")


def count(n):
    """12, 0.50, 1.23k, 45.6M: counts and per-second rates."""
    if n is None:
        return "-"
    return _scaled(n, ["", "k", "M", "G", "T"], 1000)


def size(n):
    """512 B, 12.3 KiB, 1.20 GiB."""
    if n is None:
        return "-"
    return _scaled(n, [" B", " KiB", " MiB", " GiB", " TiB"], 1024)


def rate_size(n):
    return "-" if n is None else size(n) + "/s"


def duration(s):
    """42s, 5m03s, 2h05m, 3d04h."""
    if s is None:
        return "-"
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def millis(ms):
    """A latency in ms: 0.004, 0.050, 1.23, 45.6, 120."""
    if ms is None:
        return "-"
    if ms < 0.9995:
        return f"{ms:.3f}"
    if ms < 9.995:
        return f"{ms:.2f}"
    if ms < 99.95:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


def age_ms(ms):
    """A heartbeat age: 12ms, 1.2s, 5m03s."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{int(ms)}ms"
    if ms < 60000:
        return f"{ms / 1000:.1f}s"
    return duration(ms / 1000)


def percent(part, whole):
    return "-" if not whole else f"{100.0 * part / whole:.1f}%"


def clock(unix_ms):
    return time.strftime("%H:%M:%S", time.localtime(unix_ms / 1000))


# ----------------------------------------------------------------- style

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Style:
    """ANSI colours when on, plain text when off (--once, pipes)."""

    def __init__(self, on):
        self.on = on

    def _wrap(self, code, text):
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text

    def bold(self, t):
        return self._wrap("1", t)

    def dim(self, t):
        return self._wrap("2", t)

    def red(self, t):
        return self._wrap("1;31", t)

    def yellow(self, t):
        return self._wrap("33", t)

    def green(self, t):
        return self._wrap("32", t)

    def head(self, t):
        return self._wrap("7", t)


def clip(line, width):
    """The first `width` visible characters of line (escape sequences kept)."""
    out, seen, pos = [], 0, 0
    for m in ANSI.finditer(line):
        text = line[pos:m.start()]
        if seen + len(text) > width:
            out.append(text[:width - seen])
            return "".join(out) + "\x1b[0m"
        out.append(text)
        seen += len(text)
        out.append(m.group())
        pos = m.end()
    text = line[pos:]
    if seen + len(text) > width:
        return "".join(out) + text[:width - seen] + ("\x1b[0m" if "\x1b" in line else "")
    return "".join(out) + text


# ------------------------------------------------------------ the source


class Unreachable(Exception):
    """Why /_stats could not be read, in words for the screen."""


class Source:
    """GET /_stats. A plain request that an HTTPS listener turns away (400,
    or a closed connection) is retried once over HTTPS, and HTTPS is then
    kept; the certificate is not checked (loopback, read-only counters)."""

    def __init__(self, url):
        self.url = url
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        # No proxies: http_proxy in the environment must not catch loopback.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPSHandler(context=tls))

    def _get(self, url):
        req = urllib.request.Request(url, headers={"User-Agent": "preforkctl-top",
                                                   "Accept": "application/json"})
        with self.opener.open(req, timeout=FETCH_TIMEOUT_S) as r:
            return r.read()

    def fetch(self):
        try:
            body = self._get(self.url)
        except Exception as e:  # noqa: BLE001 - every failure becomes a message
            if self.url.startswith("http://") and _maybe_tls_port(e):
                https = "https://" + self.url[len("http://"):]
                try:
                    body = self._get(https)
                    self.url = https
                except Exception:  # noqa: BLE001
                    raise Unreachable(_why(e, self.url)) from None
            else:
                raise Unreachable(_why(e, self.url)) from None
        try:
            stats = json.loads(body)
        except ValueError:
            raise Unreachable(f"{self.url} did not answer JSON (is it preforkd's http listener?)") \
                from None
        if not isinstance(stats, dict) or not isinstance(stats.get("workers"), list):
            raise Unreachable(f"{self.url} answered JSON without a workers list "
                              "(is it preforkd's /_stats?)")
        return stats


def _maybe_tls_port(e):
    if isinstance(e, urllib.error.HTTPError):
        return e.code == 400
    reason = getattr(e, "reason", e)
    return isinstance(reason, (http.client.RemoteDisconnected, http.client.BadStatusLine,
                               ConnectionResetError))


def _why(e, url):
    if isinstance(e, urllib.error.HTTPError):
        if e.code == 403:
            return (f"{url} answered 403 Forbidden: /_stats answers loopback clients "
                    "only (the listener's ops_allow)")
        return f"{url} answered HTTP {e.code} {e.reason}"
    reason = getattr(e, "reason", e)
    if isinstance(reason, ConnectionRefusedError):
        return f"{url}: connection refused: preforkd is not running, or not on this port"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"{url}: no answer within {FETCH_TIMEOUT_S:g} s (is the server stuck?)"
    if isinstance(reason, http.client.RemoteDisconnected):
        return f"{url}: the server closed the connection without answering"
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return f"{url}: {text}"


# ------------------------------------------------------------- the frame


def _get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _delta(cur, prev):
    """cur - prev for counters; None when unknown or when it went backwards
    (a restart, a worker replaced)."""
    if not isinstance(cur, (int, float)) or not isinstance(prev, (int, float)):
        return None
    return cur - prev if cur >= prev else None


def _delta_list(cur, prev):
    if not isinstance(cur, list) or not isinstance(prev, list) or len(cur) != len(prev):
        return None
    out = [c - p for c, p in zip(cur, prev)]
    return None if any(x < 0 for x in out) else out


def quantile(bounds_us, counts, q):
    """Prometheus' histogram_quantile over non-cumulative bucket counts (the
    last bucket is +Inf): (milliseconds, above_last_bound) or None."""
    if not counts or len(counts) != len(bounds_us) + 1:
        return None
    total = sum(counts)
    if total <= 0:
        return None
    rank, seen = q * total, 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            if i == len(bounds_us):
                return bounds_us[-1] / 1000.0, True
            lo = bounds_us[i - 1] if i else 0
            hi = bounds_us[i]
            return (lo + (hi - lo) * (rank - seen) / c) / 1000.0, False
        seen += c
    return None


def latency_text(bounds, counts, q):
    r = quantile(bounds, counts, q) if bounds else None
    if r is None:
        return "-"
    ms, over = r
    return f">{ms:g}" if over else millis(ms)


def _sum_lists(lists):
    lists = [x for x in lists if x]
    if not lists:
        return None
    return [sum(col) for col in zip(*lists)]


class Frame:
    """Turns two samples into the lines of one screen."""

    def __init__(self, style, url_fn, interactive):
        self.s = style
        self.url_fn = url_fn
        self.interactive = interactive

    def title(self):
        line = f"preforkd top  {self.url_fn()}  {time.strftime('%H:%M:%S')}"
        if self.interactive:
            line += "  (q: quit)"
        return self.s.bold(line)

    def unreachable(self, why, attempts, since, last_good):
        s = self.s
        lines = [self.title(), "", s.red("NOT REACHABLE: " + why)]
        tail = f"retrying every interval: {attempts} attempt{'s' if attempts != 1 else ''} since " \
               f"{time.strftime('%H:%M:%S', time.localtime(since))}"
        if last_good:
            tail += f"; last good sample {time.strftime('%H:%M:%S', time.localtime(last_good))}"
        lines.append(tail)
        lines.append("check it with: tools/preforkctl status")
        return lines

    def render(self, cur, prev, dt):
        """cur, prev: /_stats dicts (prev may be None); dt: seconds between them."""
        s = self.s
        if prev is not None and not dt:
            prev = None

        def per_s(c, p):
            d = _delta(c, p)
            return None if d is None or prev is None else d / dt

        bounds = cur.get("latency_bounds_us") or []
        lines = [self.title()]

        # master
        m = cur.get("master") or {}
        reloads = cur.get("reloads")
        rtext = f"reloads {reloads if reloads is not None else '-'}"
        last_ms = m.get("last_reload_ms") or 0
        if last_ms:
            if m.get("last_reload_ok", True):
                rtext += f" (last {clock(last_ms)}, ok)"
            else:
                err = m.get("last_config_error") or "see the error log"
                rtext += " " + s.red(f"(last {clock(last_ms)} FAILED: {err})")
        elif m.get("last_config_error"):
            rtext += " " + s.red(f"(config error: {m['last_config_error']})")
        stalled = cur.get("workers_stalled") or 0
        stext = f"workers stalled {stalled}"
        if prev is not None and (_delta(stalled, prev.get("workers_stalled")) or 0) > 0:
            stext = s.red(stext)
        lines.append(f"master  pid {m.get('pid', '-')}  up {duration(cur.get('uptime_s'))}  "
                     f"generation {m.get('generation', '-')}  {rtext}  {stext}")

        # totals
        t, pt = cur.get("totals") or {}, (prev or {}).get("totals") or {}
        conns = _get(t, "connections", default={})
        byp = conns.get("by_protocol") or {}
        byp_text = ", ".join(f"{k} {count(v)}" for k, v in byp.items() if v)
        reqs = sum((t.get("requests") or {}).values())
        preqs = sum((pt.get("requests") or {}).values()) if prev else None
        lines.append(
            f"totals  conns {count(conns.get('active'))}"
            + (f" ({byp_text})" if byp_text else "")
            + f"  accepted {count(conns.get('total'))}  rejected {count(conns.get('rejected'))}"
            + f"  req/s {count(per_s(reqs, preqs))} ({count(reqs)} in all)"
            + f"  in {rate_size(per_s(_get(t, 'bytes', 'in'), _get(pt, 'bytes', 'in')))}"
            + f"  out {rate_size(per_s(_get(t, 'bytes', 'out'), _get(pt, 'bytes', 'out')))}")

        # latency by protocol, over the interval
        lat, plat = t.get("latency"), pt.get("latency")
        if not isinstance(lat, dict) or not bounds:
            ltext = s.dim("(this server does not report latency)")
        elif prev is None or not isinstance(plat, dict):
            ltext = s.dim("(p50/p99 need two samples)")
        else:
            parts = []
            for proto, counts in lat.items():
                d = _delta_list(counts, plat.get(proto))
                if d and sum(d):
                    parts.append(f"{proto} p50 {latency_text(bounds, d, 0.5)} "
                                 f"p99 {latency_text(bounds, d, 0.99)}")
            ltext = "  ".join(parts) + "  (ms)" if parts else s.dim("(no requests in the interval)")
        lines.append(f"latency {ltext}")

        # workers
        lines.append("")
        header = (f"{'SLOT':>4} {'PID':>7} {'GEN':>3} {'STATE':<8} {'CONNS':>6} {'REQ/S':>6} "
                  f"{'IN/s':>10} {'OUT/s':>10} {'P50ms':>6} {'P99ms':>6} {'RSS':>9} {'BEAT':>6}")
        lines.append(s.head(header))
        pworkers = {w.get("pid"): w for w in (prev or {}).get("workers") or []}
        workers = sorted(cur.get("workers") or [],
                         key=lambda w: (w.get("slot", 0), w.get("generation", 0), w.get("pid", 0)))
        for w in workers:
            pw = pworkers.get(w.get("pid")) if prev is not None else None

            def wrate(*path, w=w, pw=pw):
                if pw is None:
                    return None
                return per_s(_get(w, *path), _get(pw, *path))

            wreq = sum((w.get("requests") or {}).values())
            pwreq = sum((pw.get("requests") or {}).values()) if pw else None
            d = None
            if pw is not None and isinstance(w.get("latency"), dict):
                d = _sum_lists([_delta_list(v, _get(pw, "latency", k))
                                for k, v in w["latency"].items()])
            state = w.get("state") or "-"
            beat = w.get("heartbeat_age_ms")
            row = (f"{w.get('slot', '-'):>4} {w.get('pid', '-'):>7} {w.get('generation', '-'):>3} "
                   f"{state:<8} {count(_get(w, 'connections', 'active')):>6} "
                   f"{count(per_s(wreq, pwreq) if pw else None):>6} "
                   f"{rate_size(wrate('bytes', 'in')):>10} {rate_size(wrate('bytes', 'out')):>10} "
                   f"{latency_text(bounds, d, 0.5):>6} {latency_text(bounds, d, 0.99):>6} "
                   f"{size(w.get('rss_bytes')):>9} ")
            beat_text = f"{age_ms(beat):>6}"
            if isinstance(beat, (int, float)) and beat >= 2000:
                beat_text = s.red(beat_text)
            row += beat_text
            lines.append(s.yellow(row) if state == "draining" else row)
        if not workers:
            lines.append(s.red("  no live workers"))
        lines.append("")

        # store
        st, pst = cur.get("store"), (prev or {}).get("store") or {}
        if isinstance(st, dict):
            hits, misses = st.get("hits", 0), st.get("misses", 0)
            dh, dm = _delta(hits, pst.get("hits")), _delta(misses, pst.get("misses"))
            recent = (percent(dh, dh + dm)
                      if prev is not None and dh is not None and dm is not None and dh + dm
                      else "-")
            used, cap = st.get("used_bytes"), st.get("capacity_bytes")
            ev = st.get("evictions")
            evrate = per_s(ev, pst.get("evictions"))
            evtext = f"evictions {count(ev)} ({count(evrate)}/s)"
            if evrate:
                evtext = s.yellow(evtext)
            lines.append(f"store        keys {count(st.get('keys'))}  used {size(used)} / "
                         f"{size(cap)} ({percent(used or 0, cap)})  hits {recent} "
                         f"({percent(hits, hits + misses)} in all)  {evtext}  "
                         f"expired {count(st.get('expired'))}")
        else:
            lines.append("store        " + s.dim("-"))

        # bus
        bus, pbus = cur.get("bus"), (prev or {}).get("bus") or {}
        if isinstance(bus, dict):
            msgs = bus.get("messages")
            lines.append(f"bus          channels {count(bus.get('channels'))}  "
                         f"patterns {count(bus.get('patterns'))}  messages {count(msgs)} "
                         f"({count(per_s(msgs, pbus.get('messages')))}/s)")
        else:
            lines.append("bus          " + s.dim("(not reported by this server)"))

        # persistence
        p = cur.get("persistence")
        if not isinstance(p, dict):
            lines.append("persistence  " + s.dim("(not reported by this server)"))
        elif not p.get("enabled"):
            lines.append("persistence  off (the store is in memory only)")
        else:
            snap = p.get("last_snapshot_ms") or 0
            snap_text = "none yet"
            if snap:
                ago = max(0, time.time() - snap / 1000)
                snap_text = f"{clock(snap)} ({duration(ago)} ago)"
            err = p.get("last_error") or ""
            lines.append(f"persistence  on  fsync {p.get('fsync', '-')}  last snapshot {snap_text}  "
                         f"log {size(p.get('log_bytes'))}  last error "
                         + (s.red(err) if err else "none"))

        # listeners
        ls = cur.get("listeners")
        if isinstance(ls, list) and ls:
            parts = []
            for li in ls:
                addr = li.get("address", "?")
                if ":" in str(addr):
                    addr = f"[{addr}]"
                parts.append(f"{li.get('name', '?')} {addr}:{li.get('port', '?')} "
                             f"{li.get('protocol', '?')}{'+tls' if li.get('tls') else ''}")
            lines.append("listeners    " + ", ".join(parts))
        return lines


# -------------------------------------------------------------- terminal


class Screen:
    """The alternate screen, cursor hidden, keys read one by one (cbreak,
    no echo); all restored by leave()."""

    def __init__(self):
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.saved = None
        self.active = False

    def enter(self):
        if self.fd is not None:
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        sys.stdout.write("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J")
        sys.stdout.flush()
        self.active = True

    def leave(self):
        if not self.active:
            return
        self.active = False
        try:
            sys.stdout.write("\x1b[0m\x1b[?25h\x1b[?1049l")
            sys.stdout.flush()
        finally:
            if self.saved is not None:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def draw(self, lines):
        cols, rows = shutil.get_terminal_size((100, 30))
        if len(lines) > rows:
            hidden = len(lines) - rows + 1
            lines = lines[:rows - 1] + [f"({hidden} more lines: make the terminal taller)"]
        out = "\x1b[H" + "\n".join(clip(line, cols) + "\x1b[K" for line in lines) + "\x1b[J"
        sys.stdout.write(out)
        sys.stdout.flush()

    def wait_key(self, timeout):
        """The keys typed within timeout seconds (b'' for none)."""
        if self.fd is None:
            time.sleep(max(0.0, timeout))
            return b""
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not r:
            return b""
        data = os.read(self.fd, 64)
        if not data:  # end of input: keys no longer count
            self.fd = None
        return data


class Stop(Exception):
    pass


def run_interactive(source, frame, interval):
    screen = Screen()
    state = {"lines": None, "resized": False}

    def on_signal(signum, _frame):
        raise Stop()

    def on_winch(_signum, _frame):
        state["resized"] = True

    def on_tstp(_signum, _frame):  # Ctrl-Z: give the terminal back, then take it again
        screen.leave()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        signal.signal(signal.SIGTSTP, on_tstp)
        screen.enter()
        state["resized"] = True

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGWINCH, on_winch)
    signal.signal(signal.SIGTSTP, on_tstp)

    prev = prev_t = None
    attempts, down_since, last_good = 0, None, None
    try:
        screen.enter()
        next_t = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_t:
                try:
                    cur = source.fetch()
                    cur_t = time.monotonic()
                    if prev is not None and _restarted(cur, prev):
                        prev = None
                    state["lines"] = frame.render(cur, prev, cur_t - prev_t if prev else None)
                    prev, prev_t = cur, cur_t
                    attempts, down_since, last_good = 0, None, time.time()
                except Unreachable as e:
                    attempts += 1
                    down_since = down_since or time.time()
                    prev = None  # rates restart from the next good sample
                    state["lines"] = frame.unreachable(str(e), attempts, down_since, last_good)
                screen.draw(state["lines"])
                next_t += interval
                if next_t < time.monotonic():
                    next_t = time.monotonic() + interval
            elif state["resized"]:
                state["resized"] = False
                if state["lines"]:
                    screen.draw(state["lines"])
            keys = screen.wait_key(min(0.2, next_t - time.monotonic()))
            if b"q" in keys or b"Q" in keys:
                return 0
    except (KeyboardInterrupt, Stop):
        return 0
    finally:
        screen.leave()


def _restarted(cur, prev):
    pm, cm = prev.get("master") or {}, cur.get("master") or {}
    if pm.get("pid") and cm.get("pid") and pm["pid"] != cm["pid"]:
        return True
    return (cur.get("uptime_s") or 0) < (prev.get("uptime_s") or 0)


def run_plain(source, frame, interval, once):
    """--once, or stdout is not a terminal: plain frames, one every interval."""
    prev = prev_t = None
    first = True
    try:
        while True:
            try:
                cur = source.fetch()
            except Unreachable as e:
                if once:
                    print(f"preforkctl: preforkd is not reachable: {e}", file=sys.stderr)
                    return E_NOTRUNNING
                print(f"{time.strftime('%H:%M:%S')} NOT REACHABLE: {e}", flush=True)
                prev = None
                time.sleep(interval)
                continue
            cur_t = time.monotonic()
            if prev is not None and _restarted(cur, prev):
                prev = None
            if once and prev is None and interval > 0:
                prev, prev_t = cur, cur_t
                time.sleep(interval)
                continue
            if not first:
                print()
            first = False
            print("\n".join(frame.render(cur, prev, cur_t - prev_t if prev else None)), flush=True)
            if once:
                return 0
            prev, prev_t = cur, cur_t
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `preforkctl top | head`
        sys.stderr.close()
        return 0


def main(argv):
    ap = argparse.ArgumentParser(prog="preforkctl top",
                                 description="A live view of preforkd's /_stats.")
    ap.add_argument("--url", required=True, help="the /_stats URL")
    ap.add_argument("--once", action="store_true",
                    help="print one plain frame (no terminal control) and exit")
    ap.add_argument("--interval", type=float, default=1.0,
                    help="seconds between samples (default 1; --once: 0 = one sample, no rates)")
    args = ap.parse_args(argv)
    if not (0 <= args.interval <= 3600) or (args.interval == 0 and not args.once):
        ap.error("--interval must be between 0.1 and 3600 seconds (0 only with --once)")
    if 0 < args.interval < 0.1:
        ap.error("--interval must be at least 0.1 seconds")
    source = Source(args.url)
    interactive = not args.once and sys.stdout.isatty()
    frame = Frame(Style(interactive), lambda: source.url, interactive)
    if interactive:
        return run_interactive(source, frame, args.interval)
    return run_plain(source, frame, args.interval, args.once)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

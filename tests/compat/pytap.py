# tests/compat/pytap.py: runs a module's unittest cases and prints TAP (one
# "ok"/"not ok" line per test method, the failure as "#" lines), so meson
# counts every case (protocol: 'tap').
import inspect
import sys
import time
import traceback
import unittest


def main(module_name="__main__"):
    loader = unittest.TestLoader()
    loader.sortTestMethodsUsing = None  # keep the order of the source
    suite = loader.loadTestsFromModule(sys.modules[module_name])
    cases = []

    def flatten(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                flatten(t)
            else:
                cases.append(t)

    flatten(suite)
    # Source order, so a reader of the TAP log finds them as in the file.
    def line_of(t):
        fn = getattr(type(t), t._testMethodName)
        return (inspect.getsourcelines(type(t))[1], fn.__code__.co_firstlineno)

    cases.sort(key=line_of)
    print("TAP version 13")
    print(f"1..{len(cases)}", flush=True)
    failed = 0
    for n, case in enumerate(cases, 1):
        result = unittest.TestResult()
        t0 = time.monotonic()
        case.run(result)
        ms = (time.monotonic() - t0) * 1000
        name = f"{type(case).__name__}.{case._testMethodName}"
        if result.skipped:
            print(f"ok {n} - {name} # SKIP {result.skipped[0][1]}")
        elif result.failures or result.errors:
            failed += 1
            print(f"not ok {n} - {name}")
            for _, tb in result.failures + result.errors:
                for line in tb.rstrip().splitlines():
                    print(f"# {line}")
        else:
            print(f"ok {n} - {name}")
            print(f"# {ms:.0f} ms")
        sys.stdout.flush()
    return 1 if failed else 0

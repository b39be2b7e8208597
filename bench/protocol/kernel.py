"""The timing kernel of bench_protocol.py. Runs unchanged in CPython and in MicroPython.

    micropython kernel.py [--quick]   (MICROPYPATH: protocol and bench/protocol)

Prints one JSON object per line: {"variant", "group", "name", "us", "x"} with
the median µs per operation over repeated runs and its ratio to an empty loop
iteration of the same interpreter and run. Each statement is compiled into
its own loop (exec), so the empty loop is exactly the loop around it.

Variants: "native" is the codec as shipped. In MicroPython also "bytecode":
the same source with its @micropython.native lines removed, to show what the
decorator buys (speed, and no heap frame per call for wide functions). Device
operations of the native variant run with the heap locked, so the benchmark
itself would stop on an allocation.
"""

import gc
import json
import sys

import dermaroll_protocol as dp

MPY = sys.implementation.name == "micropython"
QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 9
LOOPS = 300 if QUICK else 5000

if MPY:
    import time

    import micropython

    def clock():
        return time.ticks_us()

    def since(t0):
        return time.ticks_diff(time.ticks_us(), t0)

    lock, unlock = micropython.heap_lock, micropython.heap_unlock
else:
    from time import perf_counter_ns

    def clock():
        return perf_counter_ns()

    def since(t0):
        return (perf_counter_ns() - t0) / 1000

    def lock():
        pass

    unlock = lock


# Device side: allocation-free in the codec's promise.
DEVICE = (
    ("encode PassRecord", "dp.encode_pass_record(buf, 0, 1234, 3, 98765, 7, 3, 1, 251, 610, 1)"),
    ("encode ZoneCounts", "dp.encode_zone_counts(buf, 0, 7, 1, 0, 5, 4, 0)"),
    ("encode Status", "dp.encode_status(buf, 0, 2, 2, 87, 0, 41, 1234, 3, 7)"),
    (
        "encode RawSamples, 1 sample",
        "dp.encode_raw_header(buf, 0, 1000, 1, 1); "
        "dp.encode_raw_sample(buf, 5, 0, 10, 12, -3, 998, 100, -100, 0)",
    ),
    ("encode response (REPORT_RECORDS done)", "dp.encode_response_u32(buf, 0, 16, 19, 1, 1194)"),
    ("encode advertising data", "dp.encode_adv(buf, 0, 2, 3, 17, 90, 5)"),
    ("frame a PassRecord (body in place)", "dp.encode_frame(buf, 0, 1, None, 19)"),
    ("deframe a request (device, per byte)", "push_all(device_reader, request_wire)"),
    ("parse a request (REPORT_RECORDS)", "dp.parse_request(request_body, out)"),
)
# Host side: decoders return dicts and may allocate.
HOST = (
    ("decode PassRecord", "dp.decode_pass_record(pass_body)"),
    ("decode ZoneCounts", "dp.decode_zone_counts(counts_body)"),
    ("decode Status", "dp.decode_status(status_body)"),
    ("decode RawSamples, 1 sample", "dp.decode_raw_samples(raw1_body)"),
    ("decode RawSamples, 16 samples", "dp.decode_raw_samples(raw16_body)"),
    ("decode response", "dp.decode_response(response_body)"),
    ("decode request", "dp.decode_request(request_body)"),
    ("unframe a PassRecord", "dp.unframe(pass_chunk)"),
    ("deframe a PassRecord (host, feed)", "host_reader.feed(pass_wire)"),
    ("decode advertising + scan response", "dp.decode_advertisement(adv, scan)"),
)


def push_all(reader, data):
    i = 0
    n = len(data)
    while i < n:
        reader.push(data[i])
        i += 1


def setup(codec):
    """The names the statements use, built with `codec`."""
    raw = {"t0_ms": 1000, "zone": 1, "samples": [(1000, 0, 12, -3, 998, 100, -100, 0)]}
    raw1 = codec.pack("raw_samples", raw)
    raw["samples"] = [(1000 + i, i, 12, -3, 998, 100, -100, 0) for i in range(16)]
    pass_fields = {
        "seq": 1234,
        "boot": 3,
        "t_end_ms": 98765,
        "session": 7,
        "zone": 3,
        "direction": 1,
        "length_01mm": 251,
        "duration_ms": 610,
        "flags": 1,
    }
    pass_body = codec.pack("pass_record", pass_fields)
    request = {"op": 0x10, "token": 19, "operator": 3, "seq": 1235}
    request_body = codec.pack("request", request)
    adv = bytearray(31)
    scan = bytearray(16)
    codec.encode_adv(adv, 0, 2, 3, 17, 90, 5)
    codec.encode_scan_response(scan, 0, b"\xa4\xcf\x12\x34\xab\xcd")
    buf = bytearray(300)
    codec.encode_pass_record(buf, 3, 1234, 3, 98765, 7, 3, 1, 251, 610, 1)
    return {
        "dp": codec,
        "clock": clock,
        "since": since,
        "lock": lock,
        "unlock": unlock,
        "push_all": push_all,
        "buf": buf,
        "out": [0] * 6,
        "pass_body": pass_body,
        "pass_wire": codec.frame(1, pass_body),
        "pass_chunk": codec.frame(1, pass_body)[1:-1],
        "counts_body": codec.pack(
            "zone_counts",
            {"session": 7, "zone": 1, "flags": 0, "vertical": 5, "horizontal": 4, "diagonal": 0},
        ),
        "status_body": bytes.fromhex("0100020257000029000000d204000003000700"),
        "raw1_body": raw1,
        "raw16_body": codec.pack("raw_samples", raw),
        "response_body": bytes.fromhex("101301aa040000"),
        "request_body": request_body,
        "request_wire": codec.frame(5, request_body, True),
        "device_reader": codec.Deframer(249, True),
        "host_reader": codec.Deframer(),
        "adv": bytes(adv),
        "scan": bytes(scan),
    }


_LOOP = """
def run(n):
    gc_collect()
    {lock}
    t0 = clock()
    for _ in range(n):
        {stmt}
    t = since(t0)
    {unlock}
    return t
"""


def timer(names, stmt, locked):
    ns = dict(names)
    ns["gc_collect"] = gc.collect
    src = _LOOP.format(
        stmt=stmt,
        lock="lock()" if locked else "pass",
        unlock="unlock()" if locked else "pass",
    )
    exec(src, ns)
    return ns["run"]


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def measure(names, variant, locked_device):
    empty_run = timer(names, "pass", False)
    runs = [("device", name, timer(names, stmt, locked_device)) for name, stmt in DEVICE]
    runs += [("host", name, timer(names, stmt, False)) for name, stmt in HOST]
    times = {}
    empty = []
    for _ in range(RUNS):  # interleaved, so a slow moment of the machine hits every case
        empty.append(empty_run(LOOPS) / LOOPS)
        for _, name, run in runs:
            times.setdefault(name, []).append(run(LOOPS) / LOOPS)
    base = median(empty)
    emit(variant, "loop", "empty loop iteration", base, 1.0)
    for group, name, _ in runs:
        us = median(times[name])
        emit(variant, group, name, us, us / base)


def emit(variant, group, name, us, x):
    print(json.dumps({"variant": variant, "group": group, "name": name, "us": us, "x": x}))


def bytecode_codec():
    """The codec's own source without @micropython.native, as a module-like object."""
    with open(dp.__file__) as f:
        lines = [line for line in f.read().split("\n") if line.strip() != "@micropython.native"]
    ns = {"__name__": "dermaroll_protocol_bytecode"}
    exec("\n".join(lines), ns)

    class Codec:
        pass

    codec = Codec()
    for key in ns:
        setattr(codec, key, ns[key])
    return codec


def main():
    impl = sys.implementation
    version = "%s %d.%d.%d" % ((impl.name,) + tuple(impl.version[:3]))
    print(json.dumps({"meta": version, "runs": RUNS, "loops": LOOPS}))
    measure(setup(dp), "native", MPY)
    if MPY:
        codec = bytecode_codec()
        measure(setup(codec), "bytecode", False)


main()

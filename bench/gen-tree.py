#!/usr/bin/env python3
"""Generates the benchmark tree: python3 gen-tree.py DIR SIZE_MB [LOG_RATIO]

Shares are of the resulting zip (compressed) size:
  ~40% random binaries (10-50 MB each, incompressible),
  ~30% compressible logs (LOG_RATIO = measured deflate ratio of the generated text),
  small files: 40 per MB of target size (20,000 at 500 MB), 1-8 KiB, half text half random, 1 in 10 mode 0755,
  the rest medium files (64 KiB - 2 MiB, mixed) to reach the size.
Deterministic (fixed seed) apart from the random bytes themselves.
Prints one JSON line with the composition (uncompressed bytes and counts per kind).
"""
import json, os, random, sys

root, size_mb = sys.argv[1], int(sys.argv[2])
log_ratio = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
MB = 1024 * 1024
target = size_mb * MB
rnd = random.Random(42)
comp = {}


def put(kind, path, data, mode=0o644):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'wb') as f:
        f.write(data)
    os.chmod(full, mode)
    c = comp.setdefault(kind, {'files': 0, 'bytes': 0})
    c['files'] += 1
    c['bytes'] += len(data)


# A text block of log lines: timestamps, levels, ids and numbers give a realistic deflate ratio.
LEVELS = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR']
WORDS = 'request served cache miss hit upload artifact job runner pipeline compile link test passed failed retry worker queue'.split()


def log_block(n_lines):
    out = []
    for i in range(n_lines):
        out.append('2026-11-%02dT%02d:%02d:%02d.%03dZ %-5s [worker-%d] %s %s id=%08x took=%dms bytes=%d\n' % (
            rnd.randint(1, 28), rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59), rnd.randint(0, 999),
            rnd.choice(LEVELS), rnd.randint(1, 16), rnd.choice(WORDS), ' '.join(rnd.choices(WORDS, k=rnd.randint(2, 6))),
            rnd.getrandbits(32), rnd.randint(1, 5000), rnd.randint(0, 10**7)))
    return ''.join(out).encode()


BLOCK = log_block(40000)  # ~4 MB; repeated blocks are farther apart than deflate's 32 KiB window

# 1. random binaries: ~40% of the archive
left = int(target * 0.40)
i = 0
while left > 5 * MB:
    n = min(left, rnd.randint(10, 50) * MB)
    put('binaries', 'bin/%s/blob-%02d.bin' % (rnd.choice(['linux-amd64', 'linux-arm64', 'assets']), i), os.urandom(n), 0o755 if i % 3 == 0 else 0o644)
    left -= n
    i += 1

# 2. compressible logs: ~30% of the archive once deflated
left = int(target * 0.30 * log_ratio)
i = 0
while left > 0:
    n = min(left, rnd.randint(2, 60) * MB)
    reps, rest = divmod(n, len(BLOCK))
    put('logs', 'logs/%s/run-%03d.log' % (rnd.choice(['unit', 'integration', 'e2e']), i), BLOCK * reps + BLOCK[:rest])
    left -= n
    i += 1

# 3. thousands of small files in nested dirs
small = size_mb * 40
small_bytes = 0
for i in range(small):
    n = rnd.randint(1024, 8192)
    data = os.urandom(n) if i % 2 else BLOCK[(o := rnd.randrange(len(BLOCK) - n)):o + n]
    d = 'src/mod%02d/pkg%02d/sub%d' % (i % 25, (i // 25) % 20, i % 2)
    put('small', '%s/f%05d.%s' % (d, i, 'dat' if i % 2 else 'txt'), data, 0o755 if i % 10 == 0 else 0o644)
    small_bytes += n // 2 + (n if i % 2 else 0)  # rough deflated size

# 4. medium files (mixed) to fill up to the target
left = target - int(target * 0.40) - int(target * 0.30) - small_bytes
i = 0
while left > 64 * 1024:
    n = min(left, rnd.randint(64 * 1024, 2 * MB))
    half = n // 2
    o = rnd.randrange(len(BLOCK) - half)
    put('medium', 'dist/chunk-%02d/part-%04d.js' % (i % 16, i), os.urandom(n - half) + BLOCK[o:o + half])
    left -= (n - half) + half // int(log_ratio)
    i += 1

print(json.dumps(comp))

"""Re-create the Austen texts in this folder from Debian's r-cran-janeaustenr package.

    apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb x
    python extract_janeaustenr.py x/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb OUTDIR

The package stores each novel as an R character vector (one element per printed
line of the Project Gutenberg edition) in an R lazy-load database: a sequence of
[4-byte big-endian length][zlib stream] records, each an R XDR serialization.
This script decodes just enough of that format, then re-flows lines into
paragraphs and drops the Gutenberg _italic_ underscores.
"""
import re
import struct
import sys
import zlib
from pathlib import Path

BOOKS = ["emma", "mansfieldpark", "northangerabbey", "persuasion",
         "prideprejudice", "sensesensibility"]  # order of records in Rdata.rdb

# (output file, book, first chapter heading index (0-based), number of chapters, title)
SELECTION = [
    ("emma_ch1.txt", "emma", 0, 1, "Emma, by Jane Austen (1815)"),
    ("persuasion_ch1.txt", "persuasion", 0, 1, "Persuasion, by Jane Austen (1817)"),
    ("northanger_abbey_ch1-2.txt", "northangerabbey", 0, 2,
     "Northanger Abbey, by Jane Austen (1817)"),
    ("mansfield_park_ch1-2.txt", "mansfieldpark", 0, 2, "Mansfield Park, by Jane Austen (1814)"),
]


class _R:
    def __init__(self, b):
        self.b, self.p, self.refs = b, 0, []

    def i(self):
        v = struct.unpack(">i", self.b[self.p:self.p + 4])[0]
        self.p += 4
        return v

    def item(self):
        f = self.i()
        t, has_attr, has_tag = f & 0xFF, f & (1 << 9), f & (1 << 10)
        if t in (242, 251, 253, 254):
            return None
        if t == 255:
            return self.refs[(f >> 8) - 1]
        if t == 1:
            x = self.item()
            self.refs.append(x)
            return x
        if t == 9:
            n = self.i()
            if n == -1:
                return None
            x = self.b[self.p:self.p + n].decode("utf-8", "replace")
            self.p += n
            return x
        if t == 2:
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            car = self.item()
            return [(tag, car)] + (self.item() or [])
        if t in (16, 19, 20):
            v = [self.item() for _ in range(self.i())]
            if has_attr:
                self.item()
            return v
        if t in (10, 13, 14):
            n = self.i()
            self.p += (8 if t == 14 else 4) * n
            if has_attr:
                self.item()
            return None
        raise ValueError(f"unsupported SEXP type {t}")

    def top(self):
        assert self.b[:2] == b"X\n"
        self.p = 2
        self.i(), self.i(), self.i()
        n = self.i()  # native encoding name length
        self.p += n
        return self.item()


def read_books(rdb):
    d = Path(rdb).read_bytes()
    out, pos = [], 0
    while pos < len(d):
        o = zlib.decompressobj()
        blob = o.decompress(d[pos + 4:]) + o.flush()
        pos = len(d) - len(o.unused_data)
        v = _R(blob).top()
        if isinstance(v, list) and v and isinstance(v[0], str):
            out.append([s or "" for s in v])
    return dict(zip(BOOKS, out))


def chapters(lines, first, count):
    heads = [i for i, s in enumerate(lines) if re.match(r"^chapter\s+\w+\s*$", s, re.I)]
    start = heads[first]
    end = heads[first + count] if first + count < len(heads) else len(lines)
    paras, cur = [], []
    for s in lines[start:end]:
        s = s.strip()
        if not s:
            if cur:
                paras.append(" ".join(cur))
                cur = []
        else:
            cur.append(s)
    if cur:
        paras.append(" ".join(cur))
    paras = [p.replace("_", "") for p in paras]
    return "\n\n".join(paras)


def main():
    rdb, outdir = sys.argv[1], Path(sys.argv[2])
    books = read_books(rdb)
    for fname, book, first, count, title in SELECTION:
        text = title + "\n\n" + chapters(books[book], first, count) + "\n"
        (outdir / fname).write_text(text)
        print(fname, len(text.split()), "words")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# Checks for ds-report's output, standard library only (tests/e2e/report_e2e_test.sh):
#   report-check.py html FILE   parses FILE as HTML with every element closed in order; prints
#                               "ok" or the first problem, and every external reference found
#   report-check.py png FILE    prints "WIDTH HEIGHT COLOURS" of an 8-bit RGB(A) PNG
import sys
import zlib
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# SVG elements the report writes self-closed (<rect .../>); html.parser reports them as startendtag.


class Strict(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.external, self.scripts = [], [], [], 0

    def check_attrs(self, tag, attrs):
        for name, value in attrs:
            value = value or ""
            if name in ("src", "href", "xlink:href", "action", "poster", "srcset") and not value.startswith("#"):
                self.external.append(f"<{tag} {name}={value!r}>")
            if "url(" in value and "url(#" not in value:
                self.external.append(f"<{tag} {name}> uses {value!r}")

    def handle_starttag(self, tag, attrs):
        self.check_attrs(tag, attrs)
        if tag == "script":
            self.scripts += 1
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self.check_attrs(tag, attrs)

    def handle_endtag(self, tag):
        if not self.stack:
            self.problems.append(f"</{tag}> at {self.getpos()} closes nothing")
            return
        top, pos = self.stack.pop()
        if top != tag:
            self.problems.append(f"</{tag}> at {self.getpos()} closes <{top}> opened at {pos}")

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] == "style":
            rest = data
            while "url(" in rest:
                rest = rest[rest.index("url(") + 4:]
                if not rest.startswith("#"):
                    self.external.append("CSS url(" + rest[:40])
            if "@import" in data:
                self.external.append("CSS @import")


def check_html(path):
    text = open(path, encoding="utf-8").read()
    p = Strict()
    p.feed(text)
    p.close()
    if p.stack:
        p.problems.append(f"<{p.stack[-1][0]}> opened at {p.stack[-1][1]} never closed")
    if p.scripts:
        p.problems.append(f"{p.scripts} <script> element(s)")
    if not text.startswith("<!DOCTYPE html>"):
        p.problems.append("no <!DOCTYPE html> first")
    print("ok" if not p.problems else p.problems[0])
    for e in p.external:
        print("external: " + e)
    return 0 if not p.problems and not p.external else 1


def check_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        print("not a PNG")
        return 1
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big")
            depth, colour = body[8], body[9]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if depth != 8 or colour not in (2, 6):
        print(f"{width} {height} unsupported-format")
        return 1
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours = set()
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif ftype == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:  # a sample of the rows is plenty to tell a picture from a blank page
            for x in range(0, stride, bpp):
                colours.add(bytes(line[x:x + 3]))
        prev = line
    print(f"{width} {height} {len(colours)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("html", "png"):
        print(__doc__ or "usage: report-check.py html|png FILE", file=sys.stderr)
        sys.exit(2)
    sys.exit(check_html(sys.argv[2]) if sys.argv[1] == "html" else check_png(sys.argv[2]))

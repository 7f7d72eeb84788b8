#!/usr/bin/env python3
"""Tests for benches/plot.py (standard library only): python3 benches/plot_test.py"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import plot  # noqa: E402

SCRIPT = os.path.join(HERE, "plot.py")
NS = "{http://www.w3.org/2000/svg}"


def texts(root, cls):
    return [t.text for t in root.iter(NS + "text") if t.get("class") == cls]


def by_class(root, cls):
    return [e for e in root.iter() if e.get("class") == cls]


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="plot_test.")
        self.addCleanup(shutil.rmtree, self.tmp)

    def write(self, name, content):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
        return path

    def run_plot(self, csv_text, *args, env=None, csv_name="in.csv"):
        csv_path = self.write(csv_name, csv_text) if csv_text is not None else os.path.join(self.tmp, csv_name)
        out = os.path.join(self.tmp, "out.svg")
        r = subprocess.run(
            [sys.executable, SCRIPT, "--csv", csv_path, "--out", out, "--title", "T",
             "--x-label", "x (unit)", "--y-label", "y (unit)", *args],
            capture_output=True, text=True, env=env,
        )
        return r, out

    def render_ok(self, csv_text, *args, **kw):
        r, out = self.run_plot(csv_text, *args, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        return ET.parse(out).getroot(), r, out


FANOUT = """series,x,y,y2
gateway,100,300000,2.5
gateway,1000,1900000,4
gateway,10000,1700000,
gateway,50000,1400000,60
bare,100,310000,2
bare,1000,2100000,3
bare,10000,,20
bare,50000,2000000,40
"""


class TestChart(Base):
    def test_fanout_log_x_two_series_y2_ref_missing_values(self):
        root, _, _ = self.render_ok(
            FANOUT, "--title", "Fan-out vs subscribers", "--x-label", "subscribers",
            "--y-label", "deliveries/s", "--y2-label", "p99 (ms)", "--log-x",
            "--ref", "y2:50=p99 limit 50 ms", "--ref", "2.5M=target ≥ 2.5M/s",
        )
        self.assertEqual(root.tag, NS + "svg")
        self.assertEqual((root.get("width"), root.get("height")), ("900", "520"))
        self.assertIn("DejaVu Sans", root.get("font-family"))
        self.assertEqual(root.find(NS + "title").text, "Fan-out vs subscribers")
        self.assertEqual(texts(root, "title"), ["Fan-out vs subscribers"])
        self.assertEqual(texts(root, "x-label"), ["subscribers"])
        self.assertEqual(texts(root, "y-label"), ["deliveries/s"])
        self.assertEqual(texts(root, "y2-label"), ["p99 (ms)"])
        self.assertEqual(texts(root, "legend-entry"), ["gateway", "bare"])
        self.assertEqual(texts(root, "legend-key"), ["left: deliveries/s", "right: p99 (ms)"])
        self.assertEqual(sorted(texts(root, "ref-label")), ["p99 limit 50 ms", "target ≥ 2.5M/s"])
        self.assertEqual(len(by_class(root, "ref-line")), 2)

        lines = by_class(root, "series-line")
        self.assertEqual(len(lines), 4)  # 2 series x (y, y2)
        self.assertEqual([(l.get("data-series"), l.get("data-axis")) for l in lines],
                         [("gateway", "y"), ("gateway", "y2"), ("bare", "y"), ("bare", "y2")])
        points = {(l.get("data-series"), l.get("data-axis")): len(l.get("points").split()) for l in lines}
        self.assertEqual(points, {("gateway", "y"): 4, ("gateway", "y2"): 3,
                                  ("bare", "y"): 3, ("bare", "y2"): 4})
        for l in lines:  # right-axis lines dashed, left-axis lines solid
            self.assertEqual(l.get("stroke-dasharray") is not None, l.get("data-axis") == "y2")
        self.assertEqual(lines[0].get("stroke"), lines[1].get("stroke"))
        self.assertNotEqual(lines[0].get("stroke"), lines[2].get("stroke"))
        self.assertEqual(len(by_class(root, "marker")), 14)  # 16 cells, 2 empty
        legend_markers = by_class(root, "legend-marker")
        self.assertEqual(len(legend_markers), 2)
        self.assertNotEqual(legend_markers[0].tag, legend_markers[1].tag)  # circle vs square

        self.assertEqual(texts(root, "xtick"), ["100", "1k", "10k"])
        # y up to 2.5M (the reference line is inside the range), y2 0..60 ms
        self.assertEqual(texts(root, "ytick"), ["0", "500k", "1M", "1.5M", "2M", "2.5M"])
        self.assertEqual(texts(root, "y2tick"), ["0", "10", "20", "30", "40", "50", "60"])

    def test_linear_y_ticks_for_known_range(self):
        root, _, _ = self.render_ok("series,x,y\na,0,0\na,10,2100000\n")
        self.assertEqual(texts(root, "ytick"), ["0", "500k", "1M", "1.5M", "2M"])
        self.assertEqual(texts(root, "xtick"), ["0", "2", "4", "6", "8", "10"])
        self.assertEqual(by_class(root, "y2tick"), [])
        self.assertEqual(by_class(root, "legend-key"), [])

    def test_log_y_and_ref_on_left_axis(self):
        root, _, _ = self.render_ok(
            "series,x,y\nembedded,10,200000\nembedded,5000,150000\nredis,10,110000\nredis,5000,20000\n",
            "--log-x", "--log-y", "--ref", "100k=100k/s target",
        )
        self.assertEqual(texts(root, "xtick"), ["10", "100", "1k"])
        # less than three decades on y: 1/2/5 ticks are labelled
        self.assertEqual(texts(root, "ytick"), ["20k", "50k", "100k", "200k"])
        self.assertEqual(texts(root, "ref-label"), ["100k/s target"])
        self.assertEqual(len(by_class(root, "marker")), 4)

    def test_chart_positions_inside_canvas_and_legend_outside_plot(self):
        root, _, _ = self.render_ok(FANOUT, "--y2-label", "p99 (ms)", "--log-x")
        frame = [e for e in root.iter(NS + "rect") if e.get("fill") == "none"][0]
        right = float(frame.get("x")) + float(frame.get("width"))
        for l in by_class(root, "series-line"):
            for pt in l.get("points").split():
                x, y = map(float, pt.split(","))
                self.assertTrue(float(frame.get("x")) <= x <= right)
        y2_label = by_class(root, "y2-label")[0]
        for t in by_class(root, "legend-entry"):
            self.assertGreater(float(t.get("x")), float(y2_label.get("x")) + 10)
        for e in root.iter():
            for attr in ("x", "x1", "x2", "cx"):
                if e.get(attr) is not None:
                    self.assertTrue(0 <= float(e.get(attr)) <= 900, (e.tag, attr, e.get(attr)))

    def test_markup_in_names_is_escaped(self):
        root, _, _ = self.render_ok('series,x,y\n"a<b & ""c""",1,2\n', "--title", "<&>")
        self.assertEqual(texts(root, "legend-entry"), ['a<b & "c"'])
        self.assertEqual(texts(root, "title"), ["<&>"])

    def test_column_order_free_and_y2_column_without_values(self):
        root, r, _ = self.render_ok("x,y,series,y2,note\n1,5,s,,hi\n2,6,s,,\n")
        self.assertEqual(len(by_class(root, "series-line")), 1)
        self.assertEqual(by_class(root, "y2-label"), [])


class TestErrors(Base):
    def assertExit2(self, csv_text, *args, needle="", **kw):
        r, out = self.run_plot(csv_text, *args, **kw)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("error", r.stderr)
        self.assertIn(needle, r.stderr)
        self.assertFalse(os.path.exists(out))

    def test_empty_file(self):
        self.assertExit2("", needle="empty")

    def test_header_only(self):
        self.assertExit2("series,x,y\n", needle="no data rows")

    def test_missing_columns(self):
        self.assertExit2("series,y\na,1\n", needle="missing column(s) x")

    def test_non_numeric_x(self):
        self.assertExit2("series,x,y\na,1,2\na,ten,3\n", needle="line 3, column x: 'ten'")

    def test_non_numeric_y(self):
        self.assertExit2("series,x,y\na,1,fast\n", needle="column y")

    def test_nan(self):
        self.assertExit2("series,x,y\na,1,nan\n", needle="finite")

    def test_missing_file(self):
        self.assertExit2(None, needle="cannot read")

    def test_log_axis_non_positive(self):
        self.assertExit2("series,x,y\na,0,1\na,10,2\n", "--log-x", needle="> 0")

    def test_y2_values_need_label(self):
        self.assertExit2("series,x,y,y2\na,1,2,3\n", needle="--y2-label")

    def test_bad_ref(self):
        self.assertExit2("series,x,y\na,1,2\n", "--ref", "four=x", needle="--ref")
        self.assertExit2("series,x,y\na,1,2\n", "--ref", "no equals sign", needle="VALUE=LABEL")

    def test_ref_on_missing_right_axis(self):
        self.assertExit2("series,x,y\na,1,2\n", "--ref", "y2:3=x", needle="no y2")


class TestPng(Base):
    def test_png_without_rsvg_convert_writes_svg_and_exits_0(self):
        env = dict(os.environ, PATH=self.tmp)  # no rsvg-convert in there
        root, r, out = self.render_ok("series,x,y\na,1,2\na,2,3\n", "--png", env=env)
        self.assertIn("rsvg-convert not found", r.stderr)
        self.assertFalse(os.path.exists(out[:-4] + ".png"))

    @unittest.skipUnless(shutil.which("rsvg-convert"), "rsvg-convert not installed")
    def test_png_with_rsvg_convert(self):
        _, r, out = self.render_ok(FANOUT, "--y2-label", "p99 (ms)", "--log-x", "--png")
        with open(out[:-4] + ".png", "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


class TestUnits(unittest.TestCase):
    def test_fmt_num(self):
        cases = {0: "0", 0.25: "0.25", 1.5: "1.5", 500: "500", 1000: "1k", 1500: "1.5k",
                 10000: "10k", 250000: "250k", 1e6: "1M", 1.5e6: "1.5M", 2.5e9: "2.5G",
                 -2000: "-2k", 0.001: "0.001", 0.1 + 0.2: "0.3", 999.9999999999: "1k"}
        for v, s in cases.items():
            self.assertEqual(plot.fmt_num(v), s, v)

    def test_linear_ticks(self):
        self.assertEqual(plot.linear_ticks(0, 2.205e6), [0, 5e5, 1e6, 1.5e6, 2e6])
        self.assertEqual([plot.fmt_num(v) for v in plot.linear_ticks(0, 0.65)],
                         ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6"])
        self.assertEqual(plot.linear_ticks(0, 63), [0, 10, 20, 30, 40, 50, 60])
        self.assertEqual(plot.linear_ticks(0, 3.045e6), [0, 5e5, 1e6, 1.5e6, 2e6, 2.5e6, 3e6])
        self.assertEqual(plot.linear_ticks(100, 102), [100, 100.5, 101, 101.5, 102])
        self.assertEqual(plot.linear_ticks(-3, 3), [-3, -2, -1, 0, 1, 2, 3])

    def test_log_ticks(self):
        major, minor = plot.log_ticks(78, 64000)
        self.assertEqual(major, [100, 1000, 10000])
        self.assertEqual(minor, [200, 500, 2000, 5000, 20000, 50000])
        self.assertEqual(plot.log_ticks(8, 600)[0], [10, 20, 50, 100, 200, 500])
        self.assertEqual(plot.log_ticks(0.09, 0.6)[0], [0.1, 0.2, 0.5])

    def test_domain_of_known_range(self):
        lo, hi = plot.domain([100, 50000], log=True, pad=0.04, from_zero=False)
        self.assertLess(lo, 100)
        self.assertGreater(hi, 50000)
        self.assertEqual(plot.domain([5, 5], log=False, pad=0, from_zero=True), (0.0, 7.5))


if __name__ == "__main__":
    unittest.main()

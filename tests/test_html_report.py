"""The per-submission HTML report: escaping, embedded figures, no external resources, a real browser."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest

from autograder.html_report import function_summary, render_html, write_html

HOSTILE = '<script>alert("x")</script><img src=https://evil.example/x.png>'
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _png_b64(rgb: tuple[int, int, int], size: int = 96) -> str:
    """A base64 PNG of one flat colour (the browser test looks for that colour on the screenshot)."""
    from matplotlib import image

    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[:] = rgb
    buffer = io.BytesIO()
    image.imsave(buffer, pixels, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _result(message: str = "expected (5, 4), got (4, 5)", figures=None) -> dict:
    """A grade JSON like ``autograder.report.result_json`` writes, plus the new per-test figures."""
    tests = [
        {"name": "pairwise_sq_dist.hand_computed", "function": "pairwise_sq_dist", "kind": "value", "score": 1.0,
         "max_score": 1.0, "status": "passed", "message": "", "device": "cpu", "public": True, "seconds": 0.2},
        {"name": "pairwise_sq_dist.matches_reference", "function": "pairwise_sq_dist", "kind": "value",
         "score": 0.0, "max_score": 2.0, "status": "failed", "message": message, "device": "cpu", "public": False,
         "seconds": 0.3, "figures": figures or []},
        {"name": "stable_softplus.extremes", "function": "stable_softplus", "kind": "robustness", "score": 0.0,
         "max_score": 1.0, "status": "timeout", "message": "ran past 20 s", "device": "cpu", "public": True,
         "seconds": 20.0},
    ]
    return {"topic": "00_example", "notebook": "submissions/alice/example.ipynb", "score": 1.0, "max_score": 4.0,
            "seconds": 21.5, "device": "cpu", "seed": 1234, "isolation": ["no network namespace (unshare denied)"],
            "load_report": {"errors": ["cell 4 (grade_id=stable_softplus): SyntaxError at line 2: <b>bad</b>"],
                            "missing": ["stable_softplus"]},
            "tests": tests}


def test_student_message_is_escaped_never_markup():
    page = render_html(_result(message=HOSTILE))
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bad&lt;/b&gt;" in page  # loader errors quote student source too


def test_hostile_figure_title_and_bad_png_are_neither_markup_nor_embedded():
    figures = [{"title": '"><script>x()</script>', "png": _png_b64((0, 0, 255))},
               {"title": "not an image", "png": base64.b64encode(b"<svg onload=x()>").decode()},
               {"title": "attribute break", "png": '" onerror="x()'}]
    page = render_html(_result(figures=figures))
    assert "<script" not in page.lower() and "onerror=" not in page and "onload" not in page
    assert page.count("data:image/png;base64,") == 1
    assert page.count("not a PNG image, not shown") == 2


def test_figures_are_embedded_as_data_uris_under_their_test():
    png = _png_b64((0, 0, 255))
    figures = [{"title": "your samples", "png": png}, {"title": "reference samples", "png": png}]
    page = render_html(_result(figures=figures))
    assert page.count(f'src="data:image/png;base64,{png}"') == 2
    assert 'alt="your samples"' in page and "<figcaption>reference samples</figcaption>" in page
    test_row = page.index("pairwise_sq_dist.matches_reference</th>")
    assert test_row < page.index("your samples") < page.index("stable_softplus.extremes</th>")


def test_page_loads_nothing_external_and_forbids_scripts():
    page = render_html(_result(message="see https://example.com/help", figures=[
        {"title": "curve", "png": _png_b64((0, 0, 255))}]))
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page and "<script" not in page.lower()


def test_failed_tests_come_first_and_points_add_up_per_function():
    result = _result()
    page = render_html(result)
    failed, timed_out, passed = (page.index(f"{name}</th>") for name in (
        "pairwise_sq_dist.matches_reference", "stable_softplus.extremes", "pairwise_sq_dist.hand_computed"))
    assert failed < passed and timed_out < passed
    summary = {row["function"]: row for row in function_summary(result["tests"])}
    assert summary["pairwise_sq_dist"]["score"] == 1.0 and summary["pairwise_sq_dist"]["max_score"] == 3.0
    assert summary["pairwise_sq_dist"]["passed"] == 1 and summary["pairwise_sq_dist"]["checks"] == 2
    for text in ("Score 1.00 / 4.00", "example.ipynb", "00_example", "no network namespace", "missing definition",
                 '<th scope="col">Status</th>'):
        assert text in page


def test_empty_result_still_renders():
    page = render_html({"topic": "t", "notebook": "n.ipynb", "tests": []})
    assert "Score 0.00 / 0.00" in page and "none run" in page


def test_write_html_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = write_html(_result(), tmp_path / "reports" / "alice.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["alice.html"]


def _colour_fraction(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> float:
    """Fraction of the screenshot's pixels within ``tolerance`` (per channel, 0..255) of ``rgb``."""
    distance = np.abs(pixels[..., :3].astype(np.int32) - np.array(rgb)).max(axis=-1)
    return float((distance <= tolerance).mean())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_a_real_headless_browser_renders_badges_and_figures(tmp_path):
    from matplotlib import image

    page = write_html(_result(message=HOSTILE, figures=[{"title": "your samples", "png": _png_b64((0, 0, 255))}]),
                      tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
               page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"chromium made no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    pixels = image.imread(shot)  # (H, W, 3 or 4) floats in [0, 1]
    pixels = np.round(pixels * 255).astype(np.uint8) if pixels.dtype != np.uint8 else pixels
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000, pixels.shape
    assert pixels[..., :3].std() > 10, "the screenshot is blank"
    assert _colour_fraction(pixels, (0xC6, 0x28, 0x28)) > 1e-4, "no red FAIL badge on the screenshot"
    assert _colour_fraction(pixels, (0x1A, 0x7F, 0x37)) > 1e-4, "no green PASS badge on the screenshot"
    assert _colour_fraction(pixels, (0, 0, 255), tolerance=10) > 0.002, "the embedded figure is not shown"


def test_command_line_turns_a_result_json_into_a_page(tmp_path, capsys):
    import json

    from autograder.html_report import main

    source = tmp_path / "alice.json"
    source.write_text(json.dumps(_result()), encoding="utf-8")
    assert main([str(source), str(tmp_path / "alice.html")]) == 0
    assert "Grade report: example.ipynb" in (tmp_path / "alice.html").read_text(encoding="utf-8")
    assert main([str(source)]) == 2 and "usage" in capsys.readouterr().err

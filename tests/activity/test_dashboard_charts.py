"""Server-side SVG charts: labelled for screen readers, escaped, safe with no data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from activity.charts import Series, column_chart, hbar_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_a_bar_chart_is_an_image_titled_and_described_with_every_value():
    svg = ET.fromstring(hbar_chart("Connectors by risk", [("Low", 3), ("High", 1)]))

    assert svg.get("role") == "img"
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert title.text == "Connectors by risk"
    assert desc.text == "Low: 3; High: 1"
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert texts == ["Low", "3", "High", "1"]
    widths = [float(r.get("width")) for r in svg.iter(f"{SVG}rect")]
    assert widths[0] > widths[1] > 0


def test_a_chart_escapes_labels_and_titles():
    markup = hbar_chart("<b>risk</b>", [("<script>x</script>", 1)])
    assert "<script>" not in markup and "<b>" not in markup
    ET.fromstring(markup)  # still well-formed


def test_charts_with_no_data_or_only_zeros_render():
    ET.fromstring(hbar_chart("Empty", []))
    svg = ET.fromstring(column_chart("Zeros", ["a", "b"], [Series("S", [0, 0], "shadow")]))
    assert svg.find(f"{SVG}desc").text == "a: S 0; b: S 0"


def test_a_column_chart_has_a_legend_and_a_label_per_group():
    svg = ET.fromstring(
        column_chart(
            "Weekly",
            ["01 Jan", "08 Jan"],
            [Series("Discovered", [2, 0], "shadow"), Series("Sanctioned", [1, 4], "sanctioned")],
        )
    )
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "Discovered" in texts and "Sanctioned" in texts
    assert "01 Jan" in texts and "08 Jan" in texts
    assert (
        svg.find(f"{SVG}desc").text
        == "01 Jan: Discovered 2, Sanctioned 1; 08 Jan: Discovered 0, Sanctioned 4"
    )

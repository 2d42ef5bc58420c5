//! SVG line charts (plotters) for ROC and PR curves and metric-versus-layer sweeps, rendered in
//! memory and written atomically.

use crate::error::{Error, Result};
use crate::fsutil::write_bytes_atomic;
use plotters::prelude::*;
use std::path::Path;

/// One named line.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    /// Draw a marker at each point (for few points, e.g. one per layer).
    pub markers: bool,
    /// Dashed reference line (e.g. the ROC diagonal) drawn in grey.
    pub reference: bool,
}

/// Chart title, axis labels and ranges.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    /// Label only whole numbers on the x axis (layers).
    pub integer_x: bool,
    pub legend: SeriesLabelPosition,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Probe(format!("drawing the chart: {e}"))
}

/// Renders `series` as an SVG document.
pub fn render(chart: &Chart<'_>, series: &[Series<'_>]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (x0, x1) = chart.x_range;
        let (y0, y1) = chart.y_range;
        let mut ctx = ChartBuilder::on(&root)
            .caption(chart.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        let whole = |x: &f64| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        };
        let mut mesh = ctx.configure_mesh();
        mesh.x_desc(chart.x_label).y_desc(chart.y_label);
        if chart.integer_x {
            // One tick per whole number (plus the half steps, left blank).
            let ticks = ((x1 - x0) * 2.0).round() as usize + 1;
            mesh.x_labels(ticks.min(60)).x_label_formatter(&whole);
        }
        mesh.draw().map_err(plot_err)?;
        let mut color = 0;
        for s in series {
            let style = if s.reference {
                ShapeStyle::from(&RGBColor(160, 160, 160)).stroke_width(1)
            } else {
                color += 1;
                ShapeStyle::from(&COLORS[(color - 1) % COLORS.len()]).stroke_width(2)
            };
            let drawn = ctx
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(plot_err)?;
            if !s.reference {
                drawn
                    .label(s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            }
            if s.markers {
                ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, style.filled())))
                    .map_err(plot_err)?;
            }
        }
        ctx.configure_series_labels()
            .position(chart.legend.clone())
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Renders and writes an SVG file.
pub fn write_svg(path: &Path, chart: &Chart<'_>, series: &[Series<'_>]) -> Result<()> {
    write_bytes_atomic(path, render(chart, series)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_svg_with_title_and_legend() {
        let chart = Chart {
            title: "ROC",
            x_label: "FPR",
            y_label: "TPR",
            x_range: (0.0, 1.0),
            y_range: (0.0, 1.0),
            integer_x: false,
            legend: SeriesLabelPosition::LowerRight,
        };
        let s = [
            Series {
                name: "diagonal",
                points: vec![(0.0, 0.0), (1.0, 1.0)],
                markers: false,
                reference: true,
            },
            Series {
                name: "probe",
                points: vec![(0.0, 0.0), (0.1, 0.8), (1.0, 1.0)],
                markers: true,
                reference: false,
            },
        ];
        let svg = render(&chart, &s).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("ROC") && svg.contains("probe"));
        assert!(svg.contains("<circle"));
    }
}

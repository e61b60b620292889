//! Ground-truth landmark files for `eval`: per-frame JSON, menpo/iBUG `.pts`, dlib XML.
//!
//! - JSON: `{"frames": [[[x,y], ...], ...]}`, one face per frame, `null` for a frame
//!   without truth; pixel-centre coordinates.
//! - `.pts` (iBUG/menpo): 1-based pixel coordinates (the Matlab convention of 300-W);
//!   we subtract 1. A directory of `.pts` files is read in name order, one per frame.
//! - dlib XML (`imglab`): 0-based pixel coordinates, several images and faces; each
//!   image is matched to a prediction by file name.

use crate::error::{Error, Result};
use crate::geometry::Point;
use std::path::Path;

/// Largest landmark count a truth file may describe (iBUG has 68, MediaPipe 478): a part
/// index read from a file sizes a vector, so it is capped rather than trusted.
const MAX_PARTS: usize = 1024;

/// Truth for one frame: zero or more faces, each a list of points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TruthFrame {
    /// Image file name, when the format names one (dlib XML, `.pts` beside an image).
    pub file: Option<String>,
    pub faces: Vec<Vec<Point>>,
}

/// Load ground truth from a file or directory, by extension.
pub fn load(path: &Path) -> Result<Vec<TruthFrame>> {
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pts"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::data(path, "no .pts files in directory"));
        }
        return files.iter().map(|f| load_pts(f)).collect();
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "pts" => Ok(vec![load_pts(path)?]),
        "xml" => load_dlib_xml(path),
        "json" => load_json(path),
        _ => Err(Error::data(
            path,
            "unknown ground-truth format (expected .json, .pts, a directory of .pts, or dlib .xml)",
        )),
    }
}

/// Parse a menpo/iBUG `.pts` file.
pub fn load_pts(path: &Path) -> Result<TruthFrame> {
    let text = crate::error::read_input_text(path, crate::error::InputKind::Data)?;
    let bad = |r: String| Error::data(path, r);
    let open = text.find('{').ok_or_else(|| bad("no '{' in .pts file".into()))?;
    let close = text[open..]
        .rfind('}')
        .map(|c| open + c)
        .ok_or_else(|| bad("no '}' after the '{' in .pts file".into()))?;
    let declared = text[..open]
        .lines()
        .find_map(|l| l.trim().strip_prefix("n_points:").map(|v| v.trim().parse::<usize>()))
        .transpose()
        .map_err(|_| bad("bad n_points".into()))?;
    let mut pts = Vec::new();
    for (i, line) in text[open + 1..close].lines().enumerate() {
        let mut it = line.split_whitespace();
        let (Some(x), Some(y)) = (it.next(), it.next()) else {
            continue;
        };
        let (x, y): (f32, f32) = match (x.parse(), y.parse()) {
            (Ok(x), Ok(y)) => (x, y),
            _ => return Err(bad(format!("point line {}: {line:?} is not two numbers", i + 1))),
        };
        pts.push(Point::new(x - 1.0, y - 1.0));
    }
    if let Some(n) = declared {
        if n != pts.len() {
            return Err(bad(format!("n_points says {n} but {} points follow", pts.len())));
        }
    }
    let file = path.file_stem().map(|s| s.to_string_lossy().to_string());
    Ok(TruthFrame { file, faces: vec![pts] })
}

fn load_json(path: &Path) -> Result<Vec<TruthFrame>> {
    // An interchange file: other tools add metadata (`scheme`, `fps`, `width`, `source`...)
    // beside `frames`. Those keys are read past with one warning; `frames` itself is strict.
    #[derive(serde::Deserialize)]
    struct J {
        frames: Vec<Option<Vec<[f32; 2]>>>,
        #[serde(flatten)]
        other: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
    }
    let text = crate::error::read_input_text(path, crate::error::InputKind::Data)?;
    let j: J = serde_json::from_str(&text)
        .map_err(|e| Error::data(path, format!("not a truth file {{\"frames\": [[[x,y],...],...]}}: {e}")))?;
    if !j.other.is_empty() {
        let keys: Vec<&str> = j.other.keys().map(String::as_str).collect();
        log::warn!(
            "{}: ignoring keys other than `frames`: {}",
            path.display(),
            keys.join(", ")
        );
    }
    Ok(j.frames
        .into_iter()
        .map(|f| TruthFrame {
            file: None,
            faces: f
                .map(|pts| vec![pts.iter().map(|p| Point::new(p[0], p[1])).collect()])
                .unwrap_or_default(),
        })
        .collect())
}

fn load_dlib_xml(path: &Path) -> Result<Vec<TruthFrame>> {
    use quick_xml::events::Event;
    let text = crate::error::read_input_text(path, crate::error::InputKind::Data)?;
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut frames: Vec<TruthFrame> = Vec::new();
    let bad = |r: String| Error::data(path, r);
    // Elements still open: a file cut short ends with some, and is not a whole dataset.
    let mut open: Vec<String> = Vec::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| bad(format!("XML error at byte {}: {e}", reader.buffer_position())))?;
        match &ev {
            Event::Start(e) => open.push(String::from_utf8_lossy(e.name().as_ref()).into_owned()),
            Event::End(_) => {
                open.pop();
            }
            _ => {}
        }
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &[u8]| -> Option<String> {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name)
                        .and_then(|a| a.unescape_value().ok().map(|v| v.to_string()))
                };
                match e.name().as_ref() {
                    b"image" => frames.push(TruthFrame {
                        file: attr(b"file"),
                        faces: Vec::new(),
                    }),
                    b"box" => {
                        let f = frames.last_mut().ok_or_else(|| bad("<box> outside <image>".into()))?;
                        f.faces.push(Vec::new());
                    }
                    b"part" => {
                        let face = frames
                            .last_mut()
                            .and_then(|f| f.faces.last_mut())
                            .ok_or_else(|| bad("<part> outside <box>".into()))?;
                        let num = |n: &[u8]| attr(n).and_then(|v| v.parse::<f32>().ok());
                        let idx: usize = attr(b"name")
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| bad("<part> without a numeric name".into()))?;
                        let (Some(x), Some(y)) = (num(b"x"), num(b"y")) else {
                            return Err(bad(format!("<part name='{idx}'> without numeric x/y")));
                        };
                        if idx >= MAX_PARTS {
                            return Err(bad(format!(
                                "<part name='{idx}'>: a landmark index of at most {} is expected",
                                MAX_PARTS - 1
                            )));
                        }
                        if face.len() <= idx {
                            face.resize(idx + 1, Point::new(f32::NAN, f32::NAN));
                        }
                        face[idx] = Point::new(x, y);
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(tag) = open.last() {
        return Err(bad(format!(
            "cut short: <{tag}> (and {} more) never closed",
            open.len() - 1
        )));
    }
    if frames.is_empty() {
        return Err(bad("no <image> elements: not a dlib imglab file".into()));
    }
    // Parts are numbered from 0 without gaps; a gap is a part the file lost.
    for f in &frames {
        for (bi, face) in f.faces.iter().enumerate() {
            if let Some(i) = face.iter().position(|p| !p.x.is_finite()) {
                return Err(bad(format!(
                    "image {}, box {}: part {i:02} is missing",
                    f.file.as_deref().unwrap_or("?"),
                    bi + 1
                )));
            }
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlib_xml_cut_short_or_missing_a_part_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.xml");
        let part = |n: u32| format!("<part name='{n:02}' x='1' y='2'/>");
        let whole = format!(
            "<dataset><images><image file='a.jpg'><box top='0' left='0' width='9' height='9'>{}{}</box></image></images></dataset>",
            part(0),
            part(1)
        );
        std::fs::write(&p, &whole).unwrap();
        assert_eq!(load(&p).unwrap()[0].faces[0].len(), 2);
        std::fs::write(&p, &whole[..whole.find("</box>").unwrap()]).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("cut short: <box> (and 3 more) never closed"), "{e}");
        std::fs::write(&p, whole.replace(&part(0), "")).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("image a.jpg, box 1: part 00 is missing"), "{e}");
    }

    #[test]
    fn pts_is_one_based() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.pts");
        std::fs::write(&p, "version: 1\nn_points: 2\n{\n1 1\n10.5 20\n}\n").unwrap();
        let t = load(&p).unwrap();
        assert_eq!(t[0].faces[0], vec![Point::new(0.0, 0.0), Point::new(9.5, 19.0)]);
        std::fs::write(&p, "version: 1\nn_points: 3\n{\n1 1\n}\n").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("n_points says 3"));
    }

    #[test]
    fn dlib_xml_images_boxes_parts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.xml");
        std::fs::write(
            &p,
            "<dataset><images><image file='x.jpg'><box top='1' left='2' width='3' height='4'>\
             <part name='01' x='5' y='6'/><part name='00' x='3' y='4'/></box></image></images></dataset>",
        )
        .unwrap();
        let t = load(&p).unwrap();
        assert_eq!(t[0].file.as_deref(), Some("x.jpg"));
        assert_eq!(t[0].faces[0], vec![Point::new(3.0, 4.0), Point::new(5.0, 6.0)]);
    }

    #[test]
    fn json_metadata_is_read_past_but_frames_stay_strict() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(
            &p,
            r#"{"scheme": "ibug68", "fps": 30, "width": 640, "height": 480, "source": {"clip": "a.mp4"},
               "frames": [[[1,2],[3,4]], null]}"#,
        )
        .unwrap();
        let t = load(&p).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].faces[0][1], Point::new(3.0, 4.0));
        std::fs::write(&p, r#"{"scheme": "ibug68"}"#).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("missing field `frames`"));
        std::fs::write(&p, r#"{"frames": [[[1,2],[3]]]}"#).unwrap();
        assert!(load(&p).is_err());
    }

    #[test]
    fn json_with_missing_frames() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        std::fs::write(&p, r#"{"frames": [[[1,2],[3,4]], null]}"#).unwrap();
        let t = load(&p).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t[1].faces.is_empty());
        std::fs::write(&p, r#"{"frame": []}"#).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("a.json"));
    }
}

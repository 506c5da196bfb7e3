//! File sink: one alert per line, rotated by size (`PATH.1` … `PATH.<keep>`), reopened on
//! SIGUSR1 for logrotate's move-then-signal.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use super::SinkWriter;
use crate::output::{Alert, Format, render};

pub struct FileWriter {
    path: PathBuf,
    format: Format,
    max_bytes: u64,
    keep: u32,
    out: BufWriter<File>,
    size: u64,
}

fn open(path: &Path) -> io::Result<(BufWriter<File>, u64)> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let size = f.metadata()?.len();
    Ok((BufWriter::new(f), size))
}

impl FileWriter {
    /// Opens now, so an unwritable path is a start-up error.
    pub fn open(path: PathBuf, format: Format, max_bytes: u64, keep: u32) -> io::Result<FileWriter> {
        let (out, size) = open(&path)?;
        Ok(FileWriter { path, format, max_bytes, keep, out, size })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if self.keep == 0 {
            fs::File::create(&self.path)?;
        } else {
            let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    fs::rename(&from, numbered(n + 1))?;
                }
            }
            fs::rename(&self.path, numbered(1))?;
        }
        (self.out, self.size) = open(&self.path)?;
        Ok(())
    }
}

impl SinkWriter for FileWriter {
    fn write(&mut self, alert: &Alert) -> io::Result<()> {
        let mut line = render(alert, self.format);
        line.push('\n');
        if self.max_bytes > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.out.flush()?;
        (self.out, self.size) = open(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{output::Priority, sinks::tests::alert};

    #[test]
    fn rotates_by_size_and_reopens_a_moved_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let mut w = FileWriter::open(path.clone(), Format::Json, 600, 2).unwrap();
        for _ in 0..6 {
            w.write(&alert("r", Priority::Warning)).unwrap();
        }
        w.flush().unwrap();
        let lines = |p: &Path| fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0);
        let p1 = PathBuf::from(format!("{}.1", path.display()));
        let p2 = PathBuf::from(format!("{}.2", path.display()));
        assert!(lines(&p1) > 0 && lines(&path) > 0, "rotated");
        assert!(fs::metadata(&path).unwrap().len() <= 600);
        assert_eq!(lines(&path) + lines(&p1) + lines(&p2), 6.min(lines(&path) + lines(&p1) + lines(&p2)));
        // logrotate moves the file away, then signals.
        let moved = dir.path().join("moved");
        fs::rename(&path, &moved).unwrap();
        w.reopen().unwrap();
        w.write(&alert("after", Priority::Warning)).unwrap();
        w.flush().unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains("after"));
    }

    #[test]
    fn unwritable_path_is_an_error_at_open() {
        let e = FileWriter::open("/proc/dcea-no-such/alerts".into(), Format::Json, 0, 0).err().expect("error");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}

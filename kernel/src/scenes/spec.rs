//! Which scenes run and for how many frames, from the guest's bootargs (xl
//! `extra=`): `scene=bars,animation frames=60`.

use super::scene::{Scene, UnknownScene};
use super::text::Label;
use core::fmt;

/// Frames each scene runs for when the bootargs do not say.
pub const DEFAULT_FRAMES: u32 = 8;
/// Entries a scene list may have (a scene may be listed more than once).
pub const MAX_SCENES: usize = 16;

/// The scenes to run, in order, each for the same number of frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SceneSpec {
    scenes: [Scene; MAX_SCENES],
    len: usize,
    frames: u32,
}

/// Why the bootargs' scene settings were rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// `scene=` named a scene that does not exist.
    UnknownScene(UnknownScene),
    /// `scene=` listed no scene.
    NoScenes,
    /// `scene=` listed more than [`MAX_SCENES`] scenes.
    TooManyScenes,
    /// `frames=` is not a whole number from 1 to `u32::MAX`.
    BadFrames(Label),
    /// A setting appears twice.
    Repeated(&'static str),
}

impl From<UnknownScene> for SpecError {
    fn from(error: UnknownScene) -> Self {
        SpecError::UnknownScene(error)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::UnknownScene(error) => write!(f, "bootargs scene=: {error}"),
            SpecError::NoScenes => write!(f, "bootargs scene= lists no scene"),
            SpecError::TooManyScenes => {
                write!(f, "bootargs scene= lists more than {MAX_SCENES} scenes")
            }
            SpecError::BadFrames(value) => write!(
                f,
                "bootargs frames={:?} is not a frame count of at least 1",
                value.as_str()
            ),
            SpecError::Repeated(key) => write!(f, "bootargs give {key}= more than once"),
        }
    }
}

impl Default for SceneSpec {
    /// Every scene, [`DEFAULT_FRAMES`] frames each.
    fn default() -> Self {
        let mut scenes = [Scene::Bars; MAX_SCENES];
        scenes[..Scene::ALL.len()].copy_from_slice(&Scene::ALL);
        SceneSpec {
            scenes,
            len: Scene::ALL.len(),
            frames: DEFAULT_FRAMES,
        }
    }
}

impl SceneSpec {
    /// `scenes`, each for `frames` frames.
    pub fn new(scenes: &[Scene], frames: u32) -> Result<Self, SpecError> {
        if scenes.is_empty() {
            return Err(SpecError::NoScenes);
        }
        if scenes.len() > MAX_SCENES {
            return Err(SpecError::TooManyScenes);
        }
        if frames == 0 {
            return Err(SpecError::BadFrames(Label::from_str_truncated("0")));
        }
        let mut spec = SceneSpec {
            frames,
            ..SceneSpec::default()
        };
        spec.scenes[..scenes.len()].copy_from_slice(scenes);
        spec.len = scenes.len();
        Ok(spec)
    }

    /// The settings in `bootargs`: `scene=<name>[,<name>...]` (or `all`)
    /// and `frames=<count>`; every other word is left alone. What is not
    /// given takes the [`Default`].
    pub fn from_bootargs(bootargs: &str) -> Result<Self, SpecError> {
        let mut spec = SceneSpec::default();
        let mut seen_scene = false;
        let mut seen_frames = false;
        for word in bootargs.split_ascii_whitespace() {
            if let Some(list) = word.strip_prefix("scene=") {
                if seen_scene {
                    return Err(SpecError::Repeated("scene"));
                }
                seen_scene = true;
                spec = spec.with_scene_list(list)?;
            } else if let Some(count) = word.strip_prefix("frames=") {
                if seen_frames {
                    return Err(SpecError::Repeated("frames"));
                }
                seen_frames = true;
                spec.frames = match count.parse::<u32>() {
                    Ok(frames) if frames > 0 => frames,
                    _ => return Err(SpecError::BadFrames(Label::from_str_truncated(count))),
                };
            }
        }
        Ok(spec)
    }

    fn with_scene_list(self, list: &str) -> Result<Self, SpecError> {
        if list == "all" {
            return SceneSpec::new(&Scene::ALL, self.frames);
        }
        let mut scenes = [Scene::Bars; MAX_SCENES];
        let mut len = 0;
        for name in list.split(',') {
            if name.is_empty() {
                continue;
            }
            let scene = name.parse::<Scene>()?;
            *scenes.get_mut(len).ok_or(SpecError::TooManyScenes)? = scene;
            len += 1;
        }
        SceneSpec::new(&scenes[..len], self.frames)
    }

    /// The scenes, in the order they run.
    pub fn scenes(&self) -> &[Scene] {
        &self.scenes[..self.len]
    }

    /// Frames each scene runs for.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Frames in the whole run.
    pub fn total_frames(&self) -> u64 {
        self.len as u64 * u64::from(self.frames)
    }

    /// The scene and its frame number for the `index`th frame of the run,
    /// or `None` past the end.
    pub fn frame_at(&self, index: u64) -> Option<(Scene, u32)> {
        let frames = u64::from(self.frames);
        let scene = *self.scenes().get(usize::try_from(index / frames).ok()?)?;
        Some((scene, (index % frames) as u32))
    }
}

impl fmt::Display for SceneSpec {
    /// The settings as bootargs words: `scene=bars,status frames=8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scene=")?;
        for (index, scene) in self.scenes().iter().enumerate() {
            let separator = if index == 0 { "" } else { "," };
            write!(f, "{separator}{scene}")?;
        }
        write!(f, " frames={}", self.frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn defaults_run_every_scene_for_eight_frames() {
        let spec = SceneSpec::from_bootargs("console=hvc0 log=debug").unwrap();
        assert_eq!(spec.scenes(), &Scene::ALL);
        assert_eq!(spec.frames(), DEFAULT_FRAMES);
        assert_eq!(spec.total_frames(), 32);
        assert_eq!(spec, SceneSpec::default());
        assert_eq!(
            spec.to_string(),
            "scene=bars,primitives,animation,status frames=8"
        );
    }

    #[test]
    fn scene_list_and_frames_come_from_the_bootargs() {
        let spec = SceneSpec::from_bootargs("log=info scene=bars,animation frames=60").unwrap();
        assert_eq!(spec.scenes(), &[Scene::Bars, Scene::Animation]);
        assert_eq!(spec.frames(), 60);
        assert_eq!(spec.frame_at(0), Some((Scene::Bars, 0)));
        assert_eq!(spec.frame_at(59), Some((Scene::Bars, 59)));
        assert_eq!(spec.frame_at(60), Some((Scene::Animation, 0)));
        assert_eq!(spec.frame_at(119), Some((Scene::Animation, 59)));
        assert_eq!(spec.frame_at(120), None);
        assert_eq!(spec.frame_at(u64::MAX), None);
        assert_eq!(
            SceneSpec::from_bootargs("scene=all frames=2").unwrap(),
            SceneSpec::new(&Scene::ALL, 2).unwrap()
        );
        assert_eq!(
            SceneSpec::from_bootargs(&spec.to_string()).unwrap(),
            spec,
            "Display gives bootargs words back"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let error = SceneSpec::from_bootargs("scene=bars,clock").unwrap_err();
        assert_eq!(
            error.to_string(),
            "bootargs scene=: unknown scene \"clock\" (known: bars, primitives, animation, status, paint)"
        );
        assert_eq!(
            SceneSpec::from_bootargs("scene=").unwrap_err(),
            SpecError::NoScenes
        );
        assert_eq!(
            SceneSpec::from_bootargs(&std::format!("scene={}", ["bars"; 17].join(","))),
            Err(SpecError::TooManyScenes)
        );
        for frames in ["0", "-1", "x", "", "4294967296"] {
            let error = SceneSpec::from_bootargs(&std::format!("frames={frames}")).unwrap_err();
            assert_eq!(
                error,
                SpecError::BadFrames(Label::from_str_truncated(frames))
            );
        }
        assert_eq!(
            SceneSpec::from_bootargs("frames=2 frames=3"),
            Err(SpecError::Repeated("frames"))
        );
        assert_eq!(
            SceneSpec::from_bootargs("scene=bars scene=status"),
            Err(SpecError::Repeated("scene"))
        );
    }
}

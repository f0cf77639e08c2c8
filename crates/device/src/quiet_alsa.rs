//! alsa-lib's own diagnostics, routed to tracing.

/// Routes alsa-lib's own stderr chatter ("cannot find card '0'", …) on this
/// thread into a buffer that is logged at debug level when the guard drops,
/// so a missing sound card shows as one clear error, not a screen of noise.
pub(crate) struct QuietAlsa {
    #[cfg(target_os = "linux")]
    buffer: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>,
}

impl QuietAlsa {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            buffer: alsa::Output::local_error_handler().ok(),
        }
    }
}

impl Drop for QuietAlsa {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(buffer) = &self.buffer {
            let text = buffer.borrow().to_string();
            if !text.trim().is_empty() {
                tracing::debug!(target: "alsa", "{}", text.trim_end());
            }
        }
    }
}

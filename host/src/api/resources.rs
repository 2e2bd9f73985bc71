//! The files a loaded plugin ships inside its library (`"resources"` in its `plugin.json`),
//! read by the host program: the bytes stage 2 checked and kept, never the file again and
//! never the plugin's memory, so they need no grant and run none of the plugin's code.

use crate::error::Error;
use crate::library::file::Resource;

use super::Host;

impl Host {
    /// The resources of a loaded plugin, in the order its `plugin.json` declares them (of the
    /// generation serving now, after a reload the new one's). A built-in plugin's are those
    /// its [`Builtin::RESOURCE_BLOCK`](airlock_abi::Builtin::RESOURCE_BLOCK) gives; none by
    /// default.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`].
    pub fn resources(&self, plugin: &str) -> Result<Vec<Resource>, Error> {
        let loaded = self
            .shared
            .find(plugin)
            .ok_or_else(|| Error::UnknownPlugin(plugin.to_owned()))?;
        Ok(loaded.file.resources().to_vec())
    }

    /// One resource of a loaded plugin by its declared path (`skills/summarize.md`): its
    /// media type, hash and bytes.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`]; [`Error::NoSuchResource`] if the plugin declares no resource
    /// at that path.
    pub fn resource(&self, plugin: &str, path: &str) -> Result<Resource, Error> {
        let loaded = self
            .shared
            .find(plugin)
            .ok_or_else(|| Error::UnknownPlugin(plugin.to_owned()))?;
        let found = loaded.file.resources().iter().find(|r| r.path == path);
        found.cloned().ok_or_else(|| Error::NoSuchResource {
            plugin: plugin.to_owned(),
            path: path.to_owned(),
        })
    }
}

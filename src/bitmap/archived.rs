//! Reading a TailBitmap in place from archived bytes (a frame, the WAL, a
//! snapshot), and refusing any that is not canonical.

use super::view::BitmapView;
use super::ArchivedTailBitmap;
use super::BitmapError;
use rkyv::bytecheck::Verify;
use rkyv::rancor::{fail, Fallible, Source};

#[cfg(not(target_endian = "little"))]
compile_error!("traft reads archived words in place and needs a little-endian target");

impl ArchivedTailBitmap {
    /// The archived bitmap as a view, without copying its words.
    pub fn view(&self) -> BitmapView<'_> {
        let words = self.words.as_slice();
        // SAFETY: `u64_le` is `#[repr(C, align(8))]` around one `u64` (rend),
        // so it has the layout of `u64`, and on a little-endian target (checked
        // above) the same value. The slice borrows `self`, so it lives as long.
        let words: &[u64] =
            unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u64>(), words.len()) };
        BitmapView::new(self.offset.to_native(), self.start.to_native(), words)
    }
}

// SAFETY: `verify` returns `Ok` only if the bitmap is canonical and within
// the size limits; it relies on nothing but the (already checked) fields.
unsafe impl<C> Verify<C> for ArchivedTailBitmap
where
    C: Fallible + ?Sized,
    C::Error: Source,
{
    fn verify(&self, _context: &mut C) -> Result<(), C::Error> {
        match self.view().check_canonical() {
            Ok(()) => Ok(()),
            Err(error) => fail!(InvalidBitmap(error)),
        }
    }
}

#[derive(Debug)]
struct InvalidBitmap(BitmapError);

impl std::fmt::Display for InvalidBitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for InvalidBitmap {}

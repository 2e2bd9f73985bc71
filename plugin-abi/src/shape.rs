//! The shape of a value as its type serializes it — field and variant names, the kind of each
//! scalar (unsigned, signed, float, text, bytes, …), where options, sequences and maps are —
//! hashed. postcard writes none of this, so two types that differ only in a field's name or a
//! number's sign read each other's bytes without an error; the sender's shape travels beside
//! the bytes, and the receiver compares it with the shape of what it read (the same value
//! under the same type gives the same shape), which catches what JSON's field names caught:
//! a contract changed without a version bump.

use serde::ser::{self, Serialize};

/// The shape of `value`, hashed.
pub(crate) fn shape_of<T: Serialize + ?Sized>(value: &T) -> u64 {
    let mut shape = Shape(0xcbf2_9ce4_8422_2325);
    // A type whose `Serialize` fails is caught when it is encoded; its shape is what was seen.
    let _ = value.serialize(&mut shape);
    shape.0
}

struct Shape(u64);

/// Never produced: serializing a shape cannot fail, but serde asks for an error type.
#[derive(Debug)]
pub(crate) struct NoError;

impl std::fmt::Display for NoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a custom serializer failed")
    }
}

impl std::error::Error for NoError {}

impl ser::Error for NoError {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Self
    }
}

impl Shape {
    fn mark(&mut self, tag: u8) {
        self.0 = (self.0 ^ u64::from(tag)).wrapping_mul(0x0100_0000_01b3);
    }

    fn name(&mut self, name: &str) {
        for b in name.bytes() {
            self.mark(b);
        }
        self.mark(0xff);
    }
}

type Done = Result<(), NoError>;

impl ser::Serializer for &mut Shape {
    type Ok = ();
    type Error = NoError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> Done {
        self.mark(1);
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Done {
        self.mark(2);
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Done {
        self.mark(2);
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Done {
        self.mark(2);
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Done {
        self.mark(2);
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Done {
        self.mark(2);
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Done {
        self.mark(3);
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Done {
        self.mark(3);
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Done {
        self.mark(3);
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Done {
        self.mark(3);
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Done {
        self.mark(3);
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Done {
        self.mark(4);
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Done {
        self.mark(5);
        Ok(())
    }
    fn serialize_char(self, _: char) -> Done {
        self.mark(6);
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Done {
        self.mark(7);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Done {
        self.mark(8);
        Ok(())
    }
    fn serialize_none(self) -> Done {
        self.mark(9);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Done {
        self.mark(10);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Done {
        self.mark(11);
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Done {
        self.mark(11);
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Done {
        self.mark(12);
        self.name(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Done {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Done {
        self.mark(13);
        self.name(variant);
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, NoError> {
        self.mark(14);
        Ok(self)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self, NoError> {
        self.mark(15);
        self.mark(len as u8);
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Self, NoError> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self, NoError> {
        self.mark(16);
        self.name(variant);
        self.serialize_tuple(len)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, NoError> {
        self.mark(17);
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, NoError> {
        self.mark(18);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, NoError> {
        self.mark(19);
        self.name(variant);
        Ok(self)
    }
}

impl ser::SerializeSeq for &mut Shape {
    type Ok = ();
    type Error = NoError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        value.serialize(&mut **self)
    }
    fn end(self) -> Done {
        self.mark(20);
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Shape {
    type Ok = ();
    type Error = NoError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        value.serialize(&mut **self)
    }
    fn end(self) -> Done {
        self.mark(20);
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Shape {
    type Ok = ();
    type Error = NoError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        value.serialize(&mut **self)
    }
    fn end(self) -> Done {
        self.mark(20);
        Ok(())
    }
}

impl ser::SerializeTupleVariant for &mut Shape {
    type Ok = ();
    type Error = NoError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        value.serialize(&mut **self)
    }
    fn end(self) -> Done {
        self.mark(20);
        Ok(())
    }
}

impl ser::SerializeMap for &mut Shape {
    type Ok = ();
    type Error = NoError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Done {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        value.serialize(&mut **self)
    }
    fn end(self) -> Done {
        self.mark(20);
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Shape {
    type Ok = ();
    type Error = NoError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Done {
        self.name(key);
        value.serialize(&mut **self)
    }
    fn skip_field(&mut self, key: &'static str) -> Done {
        self.name(key);
        self.mark(21);
        Ok(())
    }
    fn end(self) -> Done {
        self.mark(20);
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Shape {
    type Ok = ();
    type Error = NoError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Done {
        self.name(key);
        value.serialize(&mut **self)
    }
    fn end(self) -> Done {
        self.mark(20);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct A {
        text: String,
    }
    #[derive(serde::Serialize)]
    struct B {
        message: String,
    }
    #[derive(serde::Serialize)]
    struct C {
        text: u32,
    }
    #[derive(serde::Serialize)]
    struct Renamed {
        text: String,
    }

    #[test]
    fn names_and_kinds_count_the_type_s_name_does_not() {
        let a = shape_of(&A { text: "x".into() });
        assert_eq!(
            a,
            shape_of(&A {
                text: "other".into()
            })
        );
        assert_eq!(a, shape_of(&Renamed { text: "x".into() }));
        assert_ne!(
            a,
            shape_of(&B {
                message: "x".into()
            })
        );
        assert_ne!(a, shape_of(&C { text: 1 }));
        assert_ne!(shape_of(&1u32), shape_of(&1i32));
        assert_ne!(shape_of("pong"), shape_of(&37u64));
        assert_ne!(shape_of(&Some(1u8)), shape_of(&1u8));
    }
}

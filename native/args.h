// Argument helpers shared by the native functions. The TypeScript layer
// validates every argument first (with Node's error codes); these checks are
// the last line so that a caller of the raw binding gets a TypeError, never a
// crash.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstdint>

namespace realfork {

// Failures come back to JS as a negative errno (the value stays a plain number;
// src/errors.ts turns it into a Node-style error with code, errno, syscall).
inline Napi::Value Errno(Napi::Env env, int err) { return Napi::Number::New(env, -err); }

inline bool ArgInt(const Napi::CallbackInfo& info, size_t i, int64_t* out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number")
        .ThrowAsJavaScriptException();
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != d || d < -2147483648.0 || d > 2147483647.0 || d != static_cast<double>(static_cast<int64_t>(d))) {
    Napi::RangeError::New(info.Env(), "argument " + std::to_string(i) + " must be a 32-bit integer")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

inline bool ArgInt(const Napi::CallbackInfo& info, size_t i, int* out) {
  int64_t v;
  if (!ArgInt(info, i, &v)) return false;
  *out = static_cast<int>(v);
  return true;
}

inline bool ArgString(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  if (i >= info.Length() || !info[i].IsString()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

// A writable view of a Buffer/TypedArray argument with [offset, offset+length)
// checked against its size.
inline bool ArgBytes(const Napi::CallbackInfo& info, size_t i, uint8_t** data, size_t* size) {
  if (i >= info.Length() || !info[i].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a Buffer or Uint8Array")
        .ThrowAsJavaScriptException();
    return false;
  }
  Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
  Napi::ArrayBuffer ab = ta.ArrayBuffer();
  *data = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
  *size = ta.ByteLength();
  return true;
}

}  // namespace realfork

// Exports a C constant under its own name (enums included).
#define REALFORK_CONSTANT(obj, name) (obj).Set(#name, Napi::Number::New((obj).Env(), static_cast<double>(name)))

#pragma once
// IEEE half (F16) and bfloat16 <-> float, bit-exact and portable, for
// checkpoint files only (not a compute path). Narrowing rounds to nearest,
// ties to even, as torch's .half() / .bfloat16() do; NaN stays NaN.
#include <bit>
#include <cstdint>

namespace bertune::io {

inline float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24 is exact in float
    float v = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t float_to_half(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u)  // inf, or NaN kept quiet with its top payload bits
    return sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 | ((abs >> 13) & 0x3ff) : 0);
  if (abs >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 rounds past the largest half
  uint32_t result, rest, halfway;
  if (abs < 0x38800000u) {  // below 2^-14: half subnormal (or zero)
    uint32_t exp = abs >> 23;
    if (exp < 102) return sign;  // below half the smallest subnormal
    uint32_t mant = (abs & 0x7fffffu) | 0x800000u, shift = 126 - exp;
    result = mant >> shift;
    rest = mant & ((1u << shift) - 1);
    halfway = 1u << (shift - 1);
  } else {
    result = (abs - 0x38000000u) >> 13;  // rebias exponent 127 -> 15
    rest = abs & 0x1fff;
    halfway = 0x1000;
  }
  if (rest > halfway || (rest == halfway && (result & 1))) ++result;  // may carry into exp
  return sign | static_cast<uint16_t>(result);
}

inline float bf16_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

}  // namespace bertune::io

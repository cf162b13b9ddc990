#ifndef REROUTE_CHDF5_SHIM_H
#define REROUTE_CHDF5_SHIM_H
// HDF5's constants are macros that expand to function calls plus globals
// (e.g. `(H5OPEN H5T_NATIVE_FLOAT_g)`); Swift cannot import them, so each one
// used by the project is exposed as a static inline getter.
#include <hdf5.h>

static inline unsigned chdf5_acc_trunc(void)  { return H5F_ACC_TRUNC; }
static inline unsigned chdf5_acc_excl(void)   { return H5F_ACC_EXCL; }
static inline unsigned chdf5_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned chdf5_acc_rdwr(void)   { return H5F_ACC_RDWR; }
static inline hid_t chdf5_p_default(void)     { return H5P_DEFAULT; }
static inline hid_t chdf5_s_all(void)         { return H5S_ALL; }
static inline hid_t chdf5_e_default(void)     { return H5E_DEFAULT; }
static inline hid_t chdf5_p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t chdf5_p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t chdf5_p_group_create(void) { return H5P_GROUP_CREATE; }
static inline hid_t chdf5_t_native_float(void)  { return H5T_NATIVE_FLOAT; }
static inline hid_t chdf5_t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t chdf5_t_native_int32(void)  { return H5T_NATIVE_INT32; }
static inline hid_t chdf5_t_native_int64(void)  { return H5T_NATIVE_INT64; }
static inline hid_t chdf5_t_native_uint8(void)  { return H5T_NATIVE_UINT8; }
static inline hid_t chdf5_t_ieee_f32le(void)  { return H5T_IEEE_F32LE; }
static inline hid_t chdf5_t_ieee_f64le(void)  { return H5T_IEEE_F64LE; }
static inline hid_t chdf5_t_std_i32le(void)   { return H5T_STD_I32LE; }
static inline hid_t chdf5_t_std_i64le(void)   { return H5T_STD_I64LE; }
static inline hid_t chdf5_t_std_u8le(void)    { return H5T_STD_U8LE; }
static inline hid_t chdf5_t_c_s1(void)        { return H5T_C_S1; }
static inline size_t chdf5_t_variable(void)   { return H5T_VARIABLE; }

#endif

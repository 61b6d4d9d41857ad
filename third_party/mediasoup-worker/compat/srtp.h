/*
 * libsrtp 3 API on top of libsrtp 2 (Debian bookworm ships libsrtp2 2.5).
 *
 * The mediasoup worker is written against libsrtp 3, whose protect/unprotect
 * functions take const input and separate output buffers with size_t lengths
 * (plus an MKI index on the protect side), whose policy is an opaque handle
 * built with srtp_policy_create()/srtp_policy_set_*()/srtp_policy_add_key(),
 * and which has a few names libsrtp 2 lacks. This header is found as <srtp.h>
 * ahead of the system one and maps the calls the worker makes onto libsrtp 2's
 * in-place (void*, int*) functions and its public srtp_policy_t struct.
 *
 * Written for this project; not part of libsrtp or mediasoup.
 */
#ifndef MS_SERVER_SRTP3_COMPAT_H
#define MS_SERVER_SRTP3_COMPAT_H

#include <srtp2/srtp.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Error codes added in libsrtp 3. Values follow libsrtp 3's enum order. */
#define srtp_err_status_buffer_small ((srtp_err_status_t)28)
#define srtp_err_status_cryptex_err ((srtp_err_status_t)29)

/* Renamed in libsrtp 3. */
#define srtp_stream_remove srtp_remove_stream

static inline srtp_err_status_t ms_srtp_compat_run(
  srtp_err_status_t (*fn)(srtp_t, void*, int*),
  srtp_t ctx,
  const uint8_t* in,
  size_t in_len,
  uint8_t* out,
  size_t* out_len,
  size_t room)
{
	/* libsrtp 2 works in place: `out` must hold the input plus `room` bytes. */
	if (in_len > (size_t)INT_MAX || *out_len < in_len + room)
		return srtp_err_status_buffer_small;
	if (out != in)
		memmove(out, in, in_len);

	int len = (int)in_len;
	srtp_err_status_t err = fn(ctx, out, &len);

	if (err == srtp_err_status_ok)
		*out_len = (size_t)len;

	return err;
}

static inline srtp_err_status_t ms_srtp3_protect(
  srtp_t ctx, const uint8_t* rtp, size_t rtp_len, uint8_t* srtp, size_t* srtp_len, size_t mki_index)
{
	(void)mki_index; /* The worker never uses MKI. */
	return ms_srtp_compat_run(srtp_protect, ctx, rtp, rtp_len, srtp, srtp_len, SRTP_MAX_TRAILER_LEN);
}

static inline srtp_err_status_t ms_srtp3_unprotect(
  srtp_t ctx, const uint8_t* srtp, size_t srtp_len, uint8_t* rtp, size_t* rtp_len)
{
	return ms_srtp_compat_run(srtp_unprotect, ctx, srtp, srtp_len, rtp, rtp_len, 0);
}

static inline srtp_err_status_t ms_srtp3_protect_rtcp(
  srtp_t ctx, const uint8_t* rtcp, size_t rtcp_len, uint8_t* srtcp, size_t* srtcp_len, size_t mki_index)
{
	(void)mki_index;
	return ms_srtp_compat_run(
	  srtp_protect_rtcp, ctx, rtcp, rtcp_len, srtcp, srtcp_len, SRTP_MAX_TRAILER_LEN + 4 /* SRTCP index */);
}

static inline srtp_err_status_t ms_srtp3_unprotect_rtcp(
  srtp_t ctx, const uint8_t* srtcp, size_t srtcp_len, uint8_t* rtcp, size_t* rtcp_len)
{
	return ms_srtp_compat_run(srtp_unprotect_rtcp, ctx, srtcp, srtcp_len, rtcp, rtcp_len, 0);
}

/*
 * libsrtp 3's opaque policy, kept as libsrtp 2's struct plus the storage for
 * the master key + salt that libsrtp 2 reads through policy.key.
 */
typedef srtp_policy_t ms_srtp2_policy_t;

struct ms_srtp3_policy {
	ms_srtp2_policy_t p;
	unsigned char key[SRTP_MAX_KEY_LEN];
	bool has_key;
};

typedef struct ms_srtp3_policy* ms_srtp3_policy_t;

static inline srtp_err_status_t ms_srtp3_policy_create(ms_srtp3_policy_t* policy)
{
	if (policy == NULL)
		return srtp_err_status_bad_param;
	*policy = (ms_srtp3_policy_t)calloc(1, sizeof(struct ms_srtp3_policy));
	if (*policy == NULL)
		return srtp_err_status_alloc_fail;
	(*policy)->p.key  = (*policy)->key;
	(*policy)->p.next = NULL;
	return srtp_err_status_ok;
}

static inline void ms_srtp3_policy_destroy(ms_srtp3_policy_t policy)
{
	if (policy != NULL)
	{
		memset(policy->key, 0, sizeof(policy->key));
		free(policy);
	}
}

static inline srtp_err_status_t ms_srtp3_policy_set_ssrc(ms_srtp3_policy_t policy, srtp_ssrc_t ssrc)
{
	if (policy == NULL)
		return srtp_err_status_bad_param;
	policy->p.ssrc = ssrc;
	return srtp_err_status_ok;
}

static inline srtp_err_status_t ms_srtp3_policy_set_profile(ms_srtp3_policy_t policy, srtp_profile_t profile)
{
	srtp_err_status_t err;

	if (policy == NULL)
		return srtp_err_status_bad_param;
	err = srtp_crypto_policy_set_from_profile_for_rtp(&policy->p.rtp, profile);
	if (err != srtp_err_status_ok)
		return err;
	return srtp_crypto_policy_set_from_profile_for_rtcp(&policy->p.rtcp, profile);
}

static inline srtp_err_status_t ms_srtp3_policy_add_key(
  ms_srtp3_policy_t policy,
  const uint8_t* key,
  size_t key_len,
  const uint8_t* salt,
  size_t salt_len,
  const uint8_t* mki,
  size_t mki_len)
{
	/* One master key, no MKI: all the worker uses. libsrtp 2 wants key||salt. */
	if (policy == NULL || key == NULL || (salt == NULL && salt_len > 0) || mki != NULL || mki_len != 0 ||
	    policy->has_key || key_len + salt_len > sizeof(policy->key))
		return srtp_err_status_bad_param;
	memcpy(policy->key, key, key_len);
	if (salt_len > 0)
		memcpy(policy->key + key_len, salt, salt_len);
	policy->has_key = true;
	return srtp_err_status_ok;
}

static inline srtp_err_status_t ms_srtp3_policy_set_window_size(ms_srtp3_policy_t policy, size_t window_size)
{
	if (policy == NULL)
		return srtp_err_status_bad_param;
	policy->p.window_size = (unsigned long)window_size;
	return srtp_err_status_ok;
}

static inline srtp_err_status_t ms_srtp3_policy_set_allow_repeat_tx(ms_srtp3_policy_t policy, bool allow)
{
	if (policy == NULL)
		return srtp_err_status_bad_param;
	policy->p.allow_repeat_tx = allow ? 1 : 0;
	return srtp_err_status_ok;
}

static inline srtp_err_status_t ms_srtp3_create(srtp_t* session, ms_srtp3_policy_t policy)
{
	if (policy == NULL || !policy->has_key)
		return srtp_err_status_bad_param;
	policy->p.key  = policy->key;
	policy->p.next = NULL;
	return srtp_create(session, &policy->p);
}

#define srtp_policy_t ms_srtp3_policy_t
#define srtp_policy_create ms_srtp3_policy_create
#define srtp_policy_destroy ms_srtp3_policy_destroy
#define srtp_policy_set_ssrc ms_srtp3_policy_set_ssrc
#define srtp_policy_set_profile ms_srtp3_policy_set_profile
#define srtp_policy_add_key ms_srtp3_policy_add_key
#define srtp_policy_set_window_size ms_srtp3_policy_set_window_size
#define srtp_policy_set_allow_repeat_tx ms_srtp3_policy_set_allow_repeat_tx
#define srtp_create ms_srtp3_create
#define srtp_protect ms_srtp3_protect
#define srtp_unprotect ms_srtp3_unprotect
#define srtp_protect_rtcp ms_srtp3_protect_rtcp
#define srtp_unprotect_rtcp ms_srtp3_unprotect_rtcp

#endif

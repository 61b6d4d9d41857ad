/*
 * libsrtp 3 API on top of libsrtp 2 (Debian bookworm ships libsrtp2 2.5).
 *
 * The mediasoup worker is written against libsrtp 3, whose protect/unprotect
 * functions take const input and separate output buffers with size_t lengths
 * (plus an MKI index on the protect side), and which has a few names libsrtp 2
 * lacks. This header is found as <srtp.h> ahead of the system one and maps the
 * calls the worker makes onto libsrtp 2's in-place (void*, int*) functions.
 *
 * Written for this project; not part of libsrtp or mediasoup.
 */
#ifndef MS_SERVER_SRTP3_COMPAT_H
#define MS_SERVER_SRTP3_COMPAT_H

#include <srtp2/srtp.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
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

#define srtp_protect ms_srtp3_protect
#define srtp_unprotect ms_srtp3_unprotect
#define srtp_protect_rtcp ms_srtp3_protect_rtcp
#define srtp_unprotect_rtcp ms_srtp3_unprotect_rtcp

#endif

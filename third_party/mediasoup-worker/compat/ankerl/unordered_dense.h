/*
 * ankerl::unordered_dense on top of the standard containers.
 *
 * mediasoup 3.26 uses the header-only unordered_dense library (a wrap
 * subproject fetched from GitHub) for its hash maps and sets. Debian bookworm
 * has no package of it, and the worker only uses its map, set and hash
 * templates, so this header, found as <ankerl/unordered_dense.h>, maps them
 * onto std::unordered_map, std::unordered_set and std::hash. The standard
 * containers keep every guarantee the worker relies on (`it = m.erase(it)`,
 * find/emplace/try_emplace, custom hash and equality); iteration order differs
 * (unordered_dense iterates in insertion order), which the worker does not
 * depend on.
 *
 * Written for this project; not part of unordered_dense or mediasoup.
 */
#ifndef MS_SERVER_UNORDERED_DENSE_COMPAT_H
#define MS_SERVER_UNORDERED_DENSE_COMPAT_H

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace ankerl
{
	namespace unordered_dense
	{
		template<class T, class Enable = void>
		struct hash
		{
			std::uint64_t operator()(const T& value) const noexcept(noexcept(std::hash<T>{}(value)))
			{
				return static_cast<std::uint64_t>(std::hash<T>{}(value));
			}
		};

		template<
		  class Key,
		  class T,
		  class Hash      = hash<Key>,
		  class KeyEqual  = std::equal_to<Key>,
		  class Allocator = std::allocator<std::pair<const Key, T>>>
		using map = std::unordered_map<Key, T, Hash, KeyEqual, Allocator>;

		template<class Key, class Hash = hash<Key>, class KeyEqual = std::equal_to<Key>, class Allocator = std::allocator<Key>>
		using set = std::unordered_set<Key, Hash, KeyEqual, Allocator>;
	} // namespace unordered_dense
} // namespace ankerl

#endif

// SPDX-License-Identifier: MIT
// A C++17 RAII wrapper over <ckpt.h>: move-only owners of the config and the checkpointer,
// exceptions that carry the library's message. Header-only; not installed: copy it, or use the C
// API directly (it is plain C and needs no wrapper).
#ifndef CKPT_HPP
#define CKPT_HPP

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <ckpt.h>

namespace ckpt {

// Every failure: code() is the CKPT_E* value (pinned forever), what() says which call failed and
// the library's one-line detail (which path, the system's words), as ckpt_errmsg gives it.
class Error : public std::runtime_error {
public:
	Error(int code, const std::string &what) : std::runtime_error(what), code_(code) {}
	int code() const noexcept { return code_; }

private:
	int code_;
};

namespace detail {
inline std::string message(const char *op, int rc, const char *detail)
{
	std::string m = std::string(op) + ": " + ckpt_strerror(rc);
	if (detail && *detail)
		m += std::string(" (") + detail + ")";
	return m;
}
} // namespace detail

// Configuration keys. The constructor applies the defaults and then the CKPT_* environment
// (CKPT_LOCAL_DIR, CKPT_SHARED_DIR, CKPT_NAME, ...); set() overrides a key.
class Config {
public:
	Config()
	{
		int rc = ckpt_config_new(&cfg_);
		if (rc != CKPT_OK)
			throw Error(rc, detail::message("ckpt_config_new", rc, nullptr));
	}
	~Config() { ckpt_config_free(cfg_); }
	Config(Config &&o) noexcept : cfg_(std::exchange(o.cfg_, nullptr)) {}
	Config &operator=(Config &&o) noexcept
	{
		if (this != &o) {
			ckpt_config_free(cfg_);
			cfg_ = std::exchange(o.cfg_, nullptr);
		}
		return *this;
	}
	Config(const Config &) = delete;
	Config &operator=(const Config &) = delete;

	// Throws Error(CKPT_EINVAL) naming the key or the bad value.
	Config &set(const std::string &key, const std::string &value)
	{
		int rc = ckpt_config_set(cfg_, key.c_str(), value.c_str());
		if (rc != CKPT_OK)
			throw Error(rc, detail::message("ckpt_config_set", rc,
							ckpt_config_errmsg(cfg_)));
		return *this;
	}
	// The key's current value; nullopt for an unknown key.
	std::optional<std::string> get(const std::string &key) const
	{
		const char *v = ckpt_config_get(cfg_, key.c_str());
		return v ? std::optional<std::string>(v) : std::nullopt;
	}
	const ckpt_config *native() const noexcept { return cfg_; }

private:
	ckpt_config *cfg_ = nullptr;
};

// One named buffer to save: a (pointer, size) view, borrowed for the duration of save().
struct Region {
	std::string name;
	const void *data;
	std::size_t size;
};

// A region over the elements of a contiguous container of trivially copyable values.
template <class Container> Region region(std::string name, const Container &c)
{
	using T = std::remove_cv_t<std::remove_reference_t<decltype(*std::data(c))>>;
	static_assert(std::is_trivially_copyable_v<T>, "regions hold raw bytes");
	return Region{ std::move(name), std::data(c), std::size(c) * sizeof(T) };
}
// A region over one trivially copyable object.
template <class T> Region region_of(std::string name, const T &obj)
{
	static_assert(std::is_trivially_copyable_v<T>, "regions hold raw bytes");
	return Region{ std::move(name), &obj, sizeof(T) };
}

enum class State {
	none = CKPT_STATE_NONE,
	local = CKPT_STATE_LOCAL,
	committed = CKPT_STATE_COMMITTED,
	failed = CKPT_STATE_FAILED,
};

// An open checkpointer. Move-only; the destructor closes it (finishing pending drains, bounded by
// close_timeout) and cannot report a failure: call close() to learn whether every drain
// committed. All members throw Error on failure.
class Checkpointer {
public:
	// A single process. The config is copied: it may be destroyed afterwards.
	explicit Checkpointer(const Config &cfg)
	{
		int rc = ckpt_open(&ctx_, cfg.native());
		if (rc != CKPT_OK)
			throw Error(rc, detail::message("ckpt_open", rc, ckpt_errmsg(nullptr)));
	}
#ifdef CKPT_MPI_H
	// Collective over comm (include <ckpt_mpi.h> before this header to get it).
	Checkpointer(const Config &cfg, MPI_Comm comm)
	{
		int rc = ckpt_open_mpi(&ctx_, cfg.native(), comm);
		if (rc != CKPT_OK)
			throw Error(rc, detail::message("ckpt_open_mpi", rc, ckpt_errmsg(nullptr)));
	}
#endif
	~Checkpointer() { ckpt_close(ctx_); }
	Checkpointer(Checkpointer &&o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
	Checkpointer &operator=(Checkpointer &&o) noexcept
	{
		if (this != &o) {
			ckpt_close(ctx_);
			ctx_ = std::exchange(o.ctx_, nullptr);
		}
		return *this;
	}
	Checkpointer(const Checkpointer &) = delete;
	Checkpointer &operator=(const Checkpointer &) = delete;

	explicit operator bool() const noexcept { return ctx_ != nullptr; }

	// Returns once the step is durable on the local tier; the buffers may then be reused.
	void save(std::uint64_t step, const std::vector<Region> &regions)
	{
		std::vector<ckpt_region> r;
		r.reserve(regions.size());
		for (const Region &x : regions)
			r.push_back(ckpt_region{ x.name.c_str(), x.data, x.size });
		check("ckpt_save", ckpt_save(live(), step, r.data(), r.size()));
	}
	void save(std::uint64_t step, std::initializer_list<Region> regions)
	{
		save(step, std::vector<Region>(regions));
	}
	// Until `step` (default: every step saved) is committed on the shared volume.
	void wait(std::uint64_t step = CKPT_STEP_ALL) { check("ckpt_wait", ckpt_wait(live(), step)); }
	State poll(std::uint64_t step)
	{
		int st = CKPT_STATE_NONE;
		check("ckpt_poll", ckpt_poll(live(), step, &st));
		return static_cast<State>(st);
	}
	// The newest complete step, or nullopt when there is none.
	std::optional<std::uint64_t> latest()
	{
		std::uint64_t s = 0;
		int rc = ckpt_latest(live(), &s);
		if (rc == CKPT_ENOENT)
			return std::nullopt;
		check("ckpt_latest", rc);
		return s;
	}
	std::vector<ckpt_region_info> regions(std::uint64_t step)
	{
		std::size_t n = 0;
		check("ckpt_list_regions", ckpt_list_regions(live(), step, nullptr, 0, &n));
		std::vector<ckpt_region_info> out(n);
		check("ckpt_list_regions", ckpt_list_regions(live(), step, out.data(), n, &n));
		out.resize(n);
		return out;
	}
	std::size_t region_size(std::uint64_t step, const std::string &name)
	{
		std::size_t size = 0;
		check("ckpt_region_size", ckpt_region_size(live(), step, name.c_str(), &size));
		return size;
	}
	// A region read into new memory, its checksums verified.
	std::vector<std::byte> load(std::uint64_t step, const std::string &name)
	{
		std::vector<std::byte> buf(region_size(step, name));
		check("ckpt_load", ckpt_load(live(), step, name.c_str(), buf.data(), buf.size()));
		return buf;
	}
	// A region read in place: the buffer's size must equal the region's.
	void load_into(std::uint64_t step, const std::string &name, void *buf, std::size_t size)
	{
		check("ckpt_load", ckpt_load(live(), step, name.c_str(), buf, size));
	}
	template <class T> void load_into(std::uint64_t step, const std::string &name, std::vector<T> &v)
	{
		static_assert(std::is_trivially_copyable_v<T>, "regions hold raw bytes");
		load_into(step, name, v.data(), v.size() * sizeof(T));
	}
	template <class T> void load_object(std::uint64_t step, const std::string &name, T &obj)
	{
		static_assert(std::is_trivially_copyable_v<T>, "regions hold raw bytes");
		load_into(step, name, &obj, sizeof(T));
	}
	std::pair<std::uint32_t, std::uint32_t> rank() const
	{
		std::uint32_t r = 0, n = 1;
		check("ckpt_rank", ckpt_rank(live(), &r, &n));
		return { r, n };
	}
	// Finish the drains and close; throws the first drain's failure. The object is then empty.
	void close()
	{
		int rc = ckpt_close(std::exchange(ctx_, nullptr));
		if (rc != CKPT_OK)
			throw Error(rc, detail::message("ckpt_close", rc, nullptr));
	}
	ckpt_ctx *native() const noexcept { return ctx_; }

private:
	ckpt_ctx *live() const
	{
		if (!ctx_)
			throw Error(CKPT_EINVAL, "ckpt: the checkpointer was closed or moved from");
		return ctx_;
	}
	void check(const char *op, int rc) const
	{
		if (rc != CKPT_OK)
			throw Error(rc, detail::message(op, rc, ckpt_errmsg(ctx_)));
	}

	ckpt_ctx *ctx_ = nullptr;
};

} // namespace ckpt

#endif // CKPT_HPP

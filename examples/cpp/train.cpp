// SPDX-License-Identifier: MIT
// C++ example: a training loop that checkpoints through the RAII wrapper (ckpt.hpp), loses its
// node, restores from the shared volume and finishes bit-identical to an uninterrupted run.
//
//   train [BASE_DIR [PARAMS [STEPS]]]
// Without BASE_DIR it works in a temporary directory, removed afterwards (as `make check` runs it).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "ckpt.hpp"

namespace fs = std::filesystem;

namespace {

// The same model as examples/train_demo.c: y = w.x trained with Adam on a synthetic problem.
struct Model {
	std::vector<float> w, m, v;
	std::uint64_t step = 0;
	std::uint64_t rng = 42;

	explicit Model(std::size_t n) : w(n), m(n), v(n)
	{
		for (float &x : w)
			x = 0.01f * frand();
	}

	float frand()
	{
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		return static_cast<float>((rng >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
	}

	void train_step()
	{
		const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
		std::size_t idx[64];
		float x[64], pred = 0, target = 0;

		step++;
		for (int k = 0; k < 64; k++) {
			idx[k] = static_cast<std::size_t>((frand() + 0.5f) *
							  static_cast<float>(w.size() - 1));
			x[k] = frand();
			pred += w[idx[k]] * x[k];
			target += static_cast<float>(std::sin(static_cast<double>(idx[k]))) * x[k];
		}
		const float err = pred - target;
		for (int k = 0; k < 64; k++) {
			const std::size_t i = idx[k];
			const float g = 2 * err * x[k];

			m[i] = b1 * m[i] + (1 - b1) * g;
			v[i] = b2 * v[i] + (1 - b2) * g * g;
			w[i] -= lr * m[i] / (std::sqrt(v[i]) + eps);
		}
		for (float &p : w)
			p *= 0.99999f;
	}

	void save(ckpt::Checkpointer &ck) const
	{
		const auto t0 = std::chrono::steady_clock::now();
		ck.save(step, { ckpt::region("weights", w), ckpt::region("adam.m", m),
				ckpt::region("adam.v", v), ckpt::region_of("rng", rng) });
		const std::chrono::duration<double, std::milli> t =
			std::chrono::steady_clock::now() - t0;
		std::printf("  step %4llu: saved, ckpt_save blocked %.1f ms\n",
			    static_cast<unsigned long long>(step), t.count());
	}

	void restore(ckpt::Checkpointer &ck, std::uint64_t s)
	{
		// load() returns a new buffer of the region's size; load_into() reads in place
		const std::vector<std::byte> wb = ck.load(s, "weights");
		if (wb.size() != w.size() * sizeof(float))
			throw ckpt::Error(CKPT_EINVAL, "the checkpoint holds a model of another size");
		std::memcpy(w.data(), wb.data(), wb.size());
		ck.load_into(s, "adam.m", m);
		ck.load_into(s, "adam.v", v);
		ck.load_object(s, "rng", rng);
		step = s;
	}

	bool operator==(const Model &o) const
	{
		const std::size_t bytes = w.size() * sizeof(float);
		return w.size() == o.w.size() && !std::memcmp(w.data(), o.w.data(), bytes) &&
		       !std::memcmp(m.data(), o.m.data(), bytes) &&
		       !std::memcmp(v.data(), o.v.data(), bytes) && rng == o.rng && step == o.step;
	}
};

ckpt::Config config(const fs::path &local, const fs::path &shared)
{
	ckpt::Config cfg; // defaults, then CKPT_* from the environment
	cfg.set("local_dir", local.string()).set("shared_dir", shared.string()).set("name", "cpp-demo");
	return cfg; // move-only, returned by move
}

int run(const fs::path &base, std::size_t n, std::uint64_t steps)
{
	const std::uint64_t every = 10;
	const fs::path local = base / "nvme", shared = base / "pvc";

	fs::create_directories(local);
	fs::create_directories(shared);
	std::printf("libckpt %s C++ example: %zu parameters, %llu steps, checkpoint every %llu\n",
		    ckpt_version(), n, static_cast<unsigned long long>(steps),
		    static_cast<unsigned long long>(every));

	// Errors are exceptions carrying the library's code and message.
	try {
		ckpt::Checkpointer bad(config(local, base / "not-mounted"));
		std::printf("opening a missing shared_dir should have failed\n");
		return 1;
	} catch (const ckpt::Error &e) {
		if (e.code() != CKPT_ENOENT) {
			std::printf("unexpected error: %s\n", e.what());
			return 1;
		}
		std::printf("a missing shared volume is an error: %s\n", e.what());
	}

	// 1. the reference: an uninterrupted run
	Model ref(n);
	while (ref.step < steps)
		ref.train_step();

	// 2. the same run, checkpointing, until the node is lost at 75%
	Model md(n);
	{
		ckpt::Checkpointer ck(config(local, shared));
		while (md.step < steps * 3 / 4 + every / 2) {
			md.train_step();
			if (md.step % every == 0)
				md.save(ck);
		}
		ck.wait(); // every step committed on the shared volume
	} // the destructor closes it
	std::printf("the node is lost at step %llu: wiping %s\n",
		    static_cast<unsigned long long>(md.step), local.c_str());
	for (const auto &e : fs::directory_iterator(local))
		fs::remove_all(e.path());

	// 3. a new node: restore the newest committed step and go on
	Model md2(n);
	ckpt::Checkpointer opened(config(local, shared));
	ckpt::Checkpointer ck = std::move(opened); // ownership moves; `opened` is empty now
	const std::optional<std::uint64_t> latest = ck.latest();
	if (!latest || opened) {
		std::printf("no step to restore, or a moved-from checkpointer still open\n");
		return 1;
	}
	std::printf("restoring step %llu from the shared volume:",
		    static_cast<unsigned long long>(*latest));
	for (const ckpt_region_info &r : ck.regions(*latest))
		std::printf(" %s (%llu bytes)", r.name, static_cast<unsigned long long>(r.size));
	std::printf("\n");
	md2.restore(ck, *latest);
	while (md2.step < steps) {
		md2.train_step();
		if (md2.step % every == 0)
			md2.save(ck);
	}
	ck.close(); // unlike the destructor, reports a drain that failed

	const bool same = md2 == ref;
	std::printf("after %llu steps the parameters are %s to an uninterrupted run\n",
		    static_cast<unsigned long long>(steps), same ? "bit-identical" : "DIFFERENT");
	return same ? 0 : 1;
}

} // namespace

int main(int argc, char **argv)
{
	const std::size_t n = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 262144;
	const std::uint64_t steps = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 40;
	fs::path base;
	const bool temporary = argc < 2;
	int rc = 1;

	if (n < 2 || steps < 1) {
		std::fprintf(stderr, "usage: train [BASE_DIR [PARAMS>=2 [STEPS>=1]]]\n");
		return 64;
	}
	if (temporary) {
		const char *tmp = std::getenv("TMPDIR");
		std::string tpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/ckpt-cpp-XXXXXX";
		if (!mkdtemp(tpl.data())) {
			std::perror("mkdtemp");
			return 1;
		}
		base = tpl;
	} else {
		base = argv[1];
	}
	try {
		rc = run(base, n, steps);
	} catch (const ckpt::Error &e) {
		std::fprintf(stderr, "train: %s\n", e.what());
	} catch (const std::exception &e) {
		std::fprintf(stderr, "train: %s\n", e.what());
	}
	if (temporary)
		fs::remove_all(base);
	return rc;
}

// SPDX-License-Identifier: MIT
// Checks Kubernetes manifests before `kubectl apply`: against the Kubernetes API schemas, and
// against what libckpt needs (a PVC bound to the shared volume, ckpt-restore in an initContainer
// with the trainer's CKPT_* environment, shared_dir on the PVC and never under /home,
// CKPT_REQUIRE_PERSISTENT=1 as docs/STORAGE.md asks of production job templates).
//
//   npm install --prefix DIR kubernetes-models@4.5.1 kubernetes-types@1.30.0 typescript@5.9.3 yaml@2.9.1
//   node check-manifests.mjs --modules DIR [--shared-volume NAME] FILE.yaml... [-- FILE.yaml...]...
//
// Three passes over every document, all of which must pass:
//  1. schema: the OpenAPI schema of its apiVersion/kind (kubernetes-models' JSON schemas, compiled
//     from the Kubernetes API's OpenAPI spec): required fields, types, enums, formats.
//  2. fields: the same objects checked by TypeScript against kubernetes-types (generated from the
//     same spec) for fields the API does not have: a misspelt `volumeMount` passes a JSON schema
//     without additionalProperties, and the API server would silently drop it. Only the shape is
//     checked there (every scalar is `any`): value types are pass 1's, which knows that a
//     quantity or an int-or-string may be a number.
//  3. libckpt: the invariants above, across the documents of all files of a set.
// Files separated by `--` form separate sets, checked independently in one run (the TypeScript
// program, the slow part, is built once); each output line then starts with "set N: ".
// Exit status: 0 every set passed, 1 a problem was found, 2 bad usage or missing packages.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const usage = 'usage: node check-manifests.mjs --modules DIR [--shared-volume NAME] FILE... [-- FILE...]...';
let modules = process.env.CKPT_K8S_MODULES || '.';
let sharedVolume = null;
const sets = [[]];
for (let i = 2; i < process.argv.length; i++) {
	const a = process.argv[i];
	if (a === '--modules' && i + 1 < process.argv.length) modules = process.argv[++i];
	else if (a === '--shared-volume' && i + 1 < process.argv.length) sharedVolume = process.argv[++i];
	else if (a === '--') sets.push([]);
	else if (a.startsWith('-')) fail2(usage);
	else sets[sets.length - 1].push(a);
}
if (sets.some((s) => !s.length)) fail2(usage);

function fail2(msg) {
	console.error(msg);
	process.exit(2);
}

// The packages live in DIR/node_modules (installed by the test or by hand, never committed).
const req = createRequire(path.join(path.resolve(modules), 'check-manifests.resolve.js'));
let YAML, ts;
try {
	YAML = req('yaml');
	ts = req('typescript');
	req.resolve('kubernetes-models/v1');
	req.resolve('kubernetes-types/core/v1.d.ts');
} catch (e) {
	fail2(`check-manifests: the packages are not in ${modules}/node_modules (${e.message.split('\n')[0]})\n${usage}`);
}

const problems = sets.map(() => []);
const docs = []; // { set, where, obj }
const problem = (set, where, msg) => problems[set].push(`${where}: ${msg}`);

// ---- parse every YAML document of every file
sets.forEach((files, set) => {
	for (const file of files) {
		let text;
		try {
			text = readFileSync(file, 'utf8');
		} catch (e) {
			problem(set, file, e.message);
			continue;
		}
		YAML.parseAllDocuments(text).forEach((d, i) => {
			const where = `${file}#${i + 1}`;
			if (d.errors.length) return problem(set, where, `YAML: ${d.errors[0].message}`);
			const obj = d.toJS();
			if (obj === null || obj === undefined) return; // an empty document
			if (typeof obj !== 'object' || Array.isArray(obj)) return problem(set, where, 'not an object');
			docs.push({ set, where: `${file}: ${obj.kind ?? '?'}/${obj.metadata?.name ?? '?'}`, obj });
		});
	}
});

// ---- 1. schema
function modelClass(apiVersion, kind) {
	if (typeof apiVersion !== 'string' || typeof kind !== 'string') return null;
	const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
	try {
		const mod = req(group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`);
		return typeof mod[kind] === 'function' ? mod[kind] : null;
	} catch {
		return null;
	}
}
for (const d of docs) {
	const Model = modelClass(d.obj.apiVersion, d.obj.kind);
	if (!Model) {
		problem(d.set, d.where, `schema: no Kubernetes API kind ${d.obj.kind} in apiVersion ${d.obj.apiVersion}`);
		d.unknown = true;
		continue;
	}
	try {
		new Model(d.obj).validate();
	} catch (e) {
		d.schemaErrors = true;
		for (const x of e.errors ?? [{ instancePath: '', message: e.message }]) {
			const allowed = x.params?.allowedValues ? ` (${x.params.allowedValues.join(', ')})` : '';
			problem(d.set, d.where, `schema: ${x.instancePath || '/'} ${x.message}${allowed}`);
		}
	}
}

// ---- 2. fields: each document becomes `const dN: import("kubernetes-types/...").Kind = {...};`,
// one field a line, so that a diagnostic's line names the document and the field. Scalars are
// `A` (any): the objects' keys are checked here, the values in pass 1.
const lines = ['declare const A: any;'];
const lineAt = [null]; // for each generated line: { d, where }
function push(text, d, where) {
	lines.push(text);
	lineAt.push({ d, where });
}
function emit(head, v, indent, at, d, tail) {
	const pad = '  '.repeat(indent), where = at ? `${d.where} ${at}` : d.where;
	if (v === null || v === undefined) return push(`${pad}${head}undefined${tail}`, d, where); // YAML null
	if (Array.isArray(v)) {
		if (!v.length) return push(`${pad}${head}[]${tail}`, d, where);
		push(`${pad}${head}[`, d, where);
		v.forEach((x, i) => emit('', x, indent + 1, `${at}[${i}]`, d, ','));
		return push(`${pad}]${tail}`, d, where);
	}
	if (typeof v === 'object') {
		const keys = Object.keys(v);
		if (!keys.length) return push(`${pad}${head}{}${tail}`, d, where);
		push(`${pad}${head}{`, d, where);
		for (const k of keys) emit(`${JSON.stringify(k)}: `, v[k], indent + 1, at ? `${at}.${k}` : k, d, ',');
		return push(`${pad}}${tail}`, d, where);
	}
	return push(`${pad}${head}A${tail}`, d, where);
}
function typesModule(apiVersion) { // "v1" -> core/v1, "batch/v1" -> batch/v1, "storage.k8s.io/v1" -> storage/v1
	const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['core', apiVersion];
	return `kubernetes-types/${group.split('.')[0]}/${version}`;
}
docs.forEach((d, i) => {
	if (!d.unknown)
		emit(`const d${i}: import(${JSON.stringify(typesModule(d.obj.apiVersion))}).${d.obj.kind} = `,
			d.obj, 0, '', d, ';');
});
if (lines.length) {
	const virtual = path.join(path.resolve(modules), '__manifests__.ts');
	const source = lines.join('\n') + '\nexport {};\n';
	const options = {
		strict: true, noEmit: true, target: ts.ScriptTarget.ES2020, module: ts.ModuleKind.CommonJS,
		moduleResolution: ts.ModuleResolutionKind.Node10, types: [], skipLibCheck: true,
	};
	const host = ts.createCompilerHost(options);
	const { getSourceFile, fileExists, readFile } = host;
	host.fileExists = (f) => f === virtual || fileExists.call(host, f);
	host.readFile = (f) => (f === virtual ? source : readFile.call(host, f));
	host.getSourceFile = (f, lang, ...rest) =>
		f === virtual ? ts.createSourceFile(f, source, lang) : getSourceFile.call(host, f, lang, ...rest);
	// 2353, 2561: "Object literal may only specify known properties" (with a suggestion). Other
	// diagnostics (a missing required field, an object where a scalar belongs) repeat pass 1 and
	// are shown only for a document that pass 1 found nothing wrong with.
	const excess = new Set([2353, 2561]);
	for (const diag of ts.getPreEmitDiagnostics(ts.createProgram([virtual], options, host))) {
		const msg = ts.flattenDiagnosticMessageText(diag.messageText, ' ');
		const at = diag.file?.fileName === virtual ?
			lineAt[diag.file.getLineAndCharacterOfPosition(diag.start).line] : null;
		if (!at) {
			problems.forEach((p) => p.push(`typescript: ${msg}`));
			continue;
		}
		if (excess.has(diag.code) || !at.d.schemaErrors) problem(at.d.set, at.where, `fields: ${msg}`);
	}
}

// ---- 3. libckpt's invariants, per set
const under = (p, dir) => p === dir || p.startsWith(dir.endsWith('/') ? dir : dir + '/');

function podSpecs(o) {
	switch (o.kind) {
	case 'Pod': return [o.spec];
	case 'Job': case 'StatefulSet': case 'Deployment': case 'DaemonSet': case 'ReplicaSet':
		return [o.spec?.template?.spec];
	case 'CronJob': return [o.spec?.jobTemplate?.spec?.template?.spec];
	default: return [];
	}
}

// Whether a container runs ckpt-restore (or `ckpt restore`): as its command, or as a command of
// its `sh -c` script. A mere mention (an echo, a comment) does not count.
function runsRestore(c) {
	const argv = [...(c.command ?? []), ...(c.args ?? [])];
	const base = (s) => String(s).split('/').pop();
	if (!argv.length) return false;
	if (base(argv[0]) === 'ckpt-restore' || (base(argv[0]) === 'ckpt' && argv[1] === 'restore')) return true;
	const i = argv.indexOf('-c');
	if (!/^(ba|da)?sh$/.test(base(argv[0])) || i < 0 || i + 1 >= argv.length) return false;
	return /(^|[;&|(]|\b(then|do|else|exec))[ \t]*([^\s;&|#"']*\/)?ckpt(-restore|[ \t]+restore)\b/m
		.test(String(argv[i + 1]).replace(/#.*$/gm, ''));
}

sets.forEach((_, set) => {
	const mine = docs.filter((d) => d.set === set);
	const configMaps = new Map(mine.filter((d) => d.obj.kind === 'ConfigMap').map((d) => [d.obj.metadata?.name, d.obj]));
	const pvcs = new Map(mine.filter((d) => d.obj.kind === 'PersistentVolumeClaim').map((d) => [d.obj.metadata?.name, d]));
	const bad = (where, msg) => problem(set, where, `libckpt: ${msg}`);

	for (const [name, d] of pvcs) {
		const spec = d.obj.spec ?? {}, want = sharedVolume ?? name;
		if (spec.volumeName !== want)
			bad(d.where, `spec.volumeName is ${JSON.stringify(spec.volumeName)}: it must name the shared volume's static PersistentVolume (${want})`);
		if (spec.storageClassName !== '')
			bad(d.where, 'spec.storageClassName must be "" (else the default StorageClass may provision a new, empty volume)');
		if (!(spec.accessModes ?? []).includes('ReadWriteMany'))
			bad(d.where, 'accessModes must include ReadWriteMany (every node writes its shards)');
	}

	// CKPT_* as the container sees them: envFrom ConfigMaps first, then env over them.
	const ckptEnv = (c, where) => {
		const env = new Map();
		for (const src of c.envFrom ?? []) {
			if (!src.configMapRef) continue;
			const cm = configMaps.get(src.configMapRef.name);
			if (!cm) {
				bad(where, `envFrom ConfigMap ${src.configMapRef.name} is not among the manifests checked`);
				continue;
			}
			for (const [k, v] of Object.entries(cm.data ?? {}))
				if (((src.prefix ?? '') + k).startsWith('CKPT_')) env.set((src.prefix ?? '') + k, { value: String(v) });
		}
		for (const e of c.env ?? [])
			if (e.name?.startsWith('CKPT_')) env.set(e.name, e.valueFrom ? { valueFrom: e.valueFrom } : { value: e.value ?? '' });
		return env;
	};
	// Where a directory of a container really is: on the volume mounted deepest over it.
	const locate = (c, volumes, dir) => {
		let m = null;
		for (const x of c.volumeMounts ?? [])
			if (under(dir, x.mountPath) && (!m || x.mountPath.length > m.mountPath.length)) m = x;
		if (!m) return null;
		const rel = dir.slice(m.mountPath.length).replace(/^\/+/, '');
		return { mount: m, volume: volumes.get(m.name), key: `${m.name}:${m.subPath ?? ''}/${rel}` };
	};

	let templates = 0;
	for (const d of mine)
		for (const spec of podSpecs(d.obj)) {
			if (!spec) continue;
			templates++;
			const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
			const restores = (spec.initContainers ?? []).filter(runsRestore);
			const trainers = (spec.containers ?? []).filter((c) => ckptEnv(c, d.where).size > 0);
			if (!restores.length) bad(d.where, 'no initContainer runs ckpt-restore');
			if (!trainers.length) bad(d.where, 'no container has CKPT_* environment (the trainer)');
			const place = new Map(); // "tier container" -> volume:subPath/relative path
			for (const c of [...restores, ...trainers]) {
				const cw = `${d.where} container ${c.name}`;
				const env = ckptEnv(c, cw);
				for (const k of ['CKPT_SHARED_DIR', 'CKPT_LOCAL_DIR', 'CKPT_NAME'])
					if (!env.has(k)) bad(cw, `${k} is not set`);
				if (env.get('CKPT_REQUIRE_PERSISTENT')?.value !== '1')
					bad(cw, 'CKPT_REQUIRE_PERSISTENT is not "1": a shared_dir that would not outlive the node would only be warned about');
				const shared = env.get('CKPT_SHARED_DIR')?.value, local = env.get('CKPT_LOCAL_DIR')?.value;
				if (shared !== undefined) {
					const at = locate(c, volumes, shared);
					if (under(shared, '/home') || (at && under(at.mount.mountPath, '/home')))
						bad(cw, `CKPT_SHARED_DIR ${shared} is under /home, which is node-local and ephemeral on Kubernetes`);
					const claim = at?.volume?.persistentVolumeClaim?.claimName;
					if (!claim) bad(cw, `CKPT_SHARED_DIR ${shared} is not on a PersistentVolumeClaim mount`);
					else if (!pvcs.has(claim)) bad(cw, `claim ${claim} is not among the manifests checked`);
					if (at) place.set(`shared ${c.name}`, at.key);
				}
				if (local !== undefined) {
					const at = locate(c, volumes, local);
					if (!at?.volume?.hostPath && !at?.volume?.emptyDir)
						bad(cw, `CKPT_LOCAL_DIR ${local} is not on a node-local volume (hostPath or emptyDir)`);
					if (at) place.set(`local ${c.name}`, at.key);
					if (shared !== undefined && (under(shared, local) || under(local, shared)))
						bad(cw, 'CKPT_SHARED_DIR and CKPT_LOCAL_DIR must not contain each other');
				}
			}
			// the restore writes where the trainer reads, for the same job name
			const show = (v) => JSON.stringify(v?.value ?? v ?? null);
			for (const r of restores)
				for (const t of trainers) {
					const re = ckptEnv(r, d.where), te = ckptEnv(t, d.where);
					for (const k of new Set([...re.keys(), ...te.keys()]))
						if (JSON.stringify(re.get(k)) !== JSON.stringify(te.get(k)))
							bad(d.where, `${k} differs between initContainer ${r.name} (${show(re.get(k))}) and container ${t.name} (${show(te.get(k))})`);
					for (const tier of ['shared', 'local'])
						if (place.get(`${tier} ${r.name}`) !== place.get(`${tier} ${t.name}`))
							bad(d.where, `the ${tier} directory is not on the same volume path in ${r.name} and ${t.name}`);
				}
		}
	if (!templates) bad('manifests', 'no pod template (Job, StatefulSet, ...) to check');
});

// ---- report
let total = 0;
sets.forEach((files, set) => {
	const tag = sets.length > 1 ? `set ${set + 1}: ` : '';
	const mine = docs.filter((d) => d.set === set);
	for (const d of mine)
		if (!problems[set].some((p) => p.startsWith(d.where))) console.log(`${tag}ok   ${d.where}`);
	for (const p of problems[set]) console.log(`${tag}FAIL ${p}`);
	console.log(`${tag}check-manifests: ${mine.length} documents in ${files.length} files, ` +
		`${problems[set].length} problems (Kubernetes API schema, unknown fields, libckpt invariants)`);
	total += problems[set].length;
});
process.exit(total ? 1 : 0);

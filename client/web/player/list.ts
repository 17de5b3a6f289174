/** The home page: live streams, refreshed as they go live and offline. */

interface StreamSummary {
	name: string;
	live: boolean;
	startedAt: string | null;
	viewers: number;
	video: { width: number; height: number; fps: number | null; profile: string } | null;
	audio: { codec: string } | null;
}

const REFRESH_MS = 1500;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
	if (text !== undefined) e.textContent = text;
	return e;
}

function uptime(startedAt: string | null): string {
	if (!startedAt) return '';
	const s = Math.max(0, Math.round((Date.now() - Date.parse(startedAt)) / 1000));
	const h = Math.floor(s / 3600);
	const m = Math.floor((s % 3600) / 60);
	return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s % 60}s` : `${s}s`;
}

function card(s: StreamSummary): HTMLLIElement {
	const li = el('li');
	li.dataset.stream = s.name;
	const a = el('a', { class: 'stream-card', href: `/watch/${encodeURIComponent(s.name)}` });
	const top = el('div');
	top.append(el('span', { class: 'badge live' }, 'LIVE'), ' ', el('span', { class: 'name' }, s.name));
	const v = s.video;
	const parts = [
		v ? `${v.width}×${v.height}${v.fps ? ` ${Math.round(v.fps)} fps` : ''}` : 'no video yet',
		s.audio ? s.audio.codec.toUpperCase() : 'no audio',
		`${s.viewers} watching`,
		uptime(s.startedAt),
	].filter(Boolean);
	a.append(top, el('div', { class: 'meta' }, parts.join(' · ')));
	li.append(a);
	return li;
}

export function renderList(root: HTMLElement): void {
	document.title = 'subsecond: live streams';
	const header = el('header');
	header.append(el('span', { class: 'brand' }, 'subsecond'), el('h1', {}, 'Live streams'));
	const main = el('main');
	const list = el('ul', { class: 'streams', id: 'streams' });
	const empty = el('p', { class: 'empty', id: 'empty' }, 'No stream is live. Publish to rtmp://this-host:1935/live with a stream key of your choice.');
	main.append(list, empty);
	root.replaceChildren(header, main);

	let timer = 0;
	const refresh = async (): Promise<void> => {
		try {
			const res = await fetch('/api/streams', { cache: 'no-store' });
			if (res.ok) {
				const streams = ((await res.json()) as StreamSummary[]).filter((s) => s.live);
				streams.sort((a, b) => a.name.localeCompare(b.name));
				list.replaceChildren(...streams.map(card));
				empty.hidden = streams.length > 0;
			}
		} catch {
			// The server may be restarting: keep the last list and try again.
		}
		timer = window.setTimeout(() => void refresh(), REFRESH_MS);
	};
	void refresh();
	window.addEventListener('pagehide', () => window.clearTimeout(timer));
}

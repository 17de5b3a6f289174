// The web player's entry: `/` lists live streams, `/watch/NAME` plays one.
import { renderList } from './list.js';
import { renderWatch } from './watch.js';

const root = document.getElementById('app');
if (root) {
	const m = /^\/watch\/([^/]+)\/?$/.exec(location.pathname);
	if (m?.[1]) renderWatch(root, decodeURIComponent(m[1]));
	else renderList(root);
}

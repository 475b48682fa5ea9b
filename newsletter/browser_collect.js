({preheader, postal, stripStyles}) => {
  if (stripStyles) document.querySelectorAll('style').forEach(s => s.remove());
  const shown = el => el.checkVisibility({opacityProperty: true, visibilityProperty: true})
    && el.getBoundingClientRect().width > 0 && el.getBoundingClientRect().height > 0;
  const layers = el => {
    const out = [];
    for (let e = el; e; e = e.parentElement) {
      const bg = getComputedStyle(e).backgroundColor;
      out.push(bg);
      if (/^rgb\(/.test(bg)) break;  // opaque: nothing below shows through
    }
    return out;
  };
  const seen = new Set(), texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || seen.has(el) || !shown(el)) continue;
    seen.add(el);
    const cs = getComputedStyle(el);
    const block = el.closest('h1, h2, h3, h4, p, li, div, td');
    texts.push({tag: el.tagName.toLowerCase(), block: block ? block.tagName.toLowerCase() : '',
                cls: el.className || '', text: el.textContent.trim().slice(0, 60),
                font: parseFloat(cs.fontSize), color: cs.color, layers: layers(el)});
  }
  const canvas = document.createElement('canvas').getContext('2d');
  let maxChars = 0;
  const paragraphs = [];
  for (const el of document.querySelectorAll('p, li')) {
    const text = el.textContent.trim();
    if (!shown(el) || text.length < 60) continue;
    const cs = getComputedStyle(el);
    canvas.font = `${cs.fontStyle} ${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
    const average = canvas.measureText(text).width / text.length;
    const column = el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    paragraphs.push(parseFloat(cs.fontSize));
    // Reading measure is about running text; centred footer lines are short by design.
    if (cs.textAlign !== 'center') maxChars = Math.max(maxChars, column / average);
  }
  const lineHeights = [...document.querySelectorAll('p, li')].filter(el => shown(el) && el.textContent.trim())
    .map(el => { const cs = getComputedStyle(el);
      return [el.textContent.trim().slice(0, 40), parseFloat(cs.lineHeight) / parseFloat(cs.fontSize)]; });
  const justified = [...document.body.querySelectorAll('*')]
    .filter(el => /justify/.test(getComputedStyle(el).textAlign) && el.textContent.trim() && shown(el))
    .map(el => el.textContent.trim().slice(0, 40));
  const animations = document.getAnimations().length + document.querySelectorAll('marquee, blink').length;
  const headings = [...document.querySelectorAll('h1, h2, h3')].filter(shown)
    .map(h => parseFloat(getComputedStyle(h).fontSize));
  const taps = [...document.querySelectorAll('a')].filter(a => /^read more/i.test(a.textContent.trim()) && shown(a))
    .map(a => a.getBoundingClientRect().height);
  const images = [...document.images].map(img => {
    const r = img.getBoundingClientRect();
    return {src: img.getAttribute('src') || '', alt: img.getAttribute('alt') || '', left: r.left, right: r.right,
            width: r.width, loaded: img.complete && img.naturalWidth > 0};
  });
  const smallest = needle => [...document.body.querySelectorAll('*')]
    .filter(e => e.textContent.includes(needle)).pop();
  const unsubscribe = [...document.querySelectorAll('a')].find(a => a.textContent.trim() === 'Unsubscribe');
  const disclaimer = smallest('read the original studies');
  const address = postal ? smallest(postal) : null;
  const required = {
    'research disclaimer': !!disclaimer && shown(disclaimer),
    'postal address': !!address && shown(address),
    'unsubscribe link': !!unsubscribe && shown(unsubscribe),
  };
  const body = document.body.innerText.replace(/\s+/g, ' ');
  const root = document.documentElement;
  return {
    viewport: root.clientWidth,
    scroll: Math.max(root.scrollWidth, document.body.scrollWidth),
    content: Math.max(0, ...[...document.querySelectorAll('table')].filter(shown)
      .map(t => t.getBoundingClientRect().width)),
    right: Math.max(0, ...[...document.body.querySelectorAll('*')].map(e => e.getBoundingClientRect())
      .filter(r => r.width > 0 && r.height > 0).map(r => r.right + window.scrollX)),
    texts, headings, paragraphs, maxChars, taps, images, required, lineHeights, justified, animations,
    preheaderShown: !!preheader && body.includes(preheader.replace(/\s+/g, ' ')),
    canvas: getComputedStyle(root).backgroundColor, bodyBg: getComputedStyle(document.body).backgroundColor,
  };
}

// The sign-in page: say when the last token was refused, and come back where we were.
'use strict';
(function () {
  const params = new URLSearchParams(location.search);
  if (params.get('failed') === '1') {
    document.getElementById('failed').hidden = false;
  }
  const next = params.get('next');
  // The server checks it again: only a local path is followed.
  if (next && next.startsWith('/') && !next.startsWith('//')) {
    document.getElementById('next').value = next;
  }
})();

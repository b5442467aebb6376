/* eventide console: small progressive enhancements. Every page works without this file except
 * the live segment feed. */
(function () {
  'use strict';

  // --- JSON fields: <textarea data-json="object" aria-describedby="<id>-error ..."> ----------
  function jsonProblem(text) {
    if (!text.trim()) { return 'Enter a JSON object, for example {}'; }
    var value;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return 'Not valid JSON: ' + e.message;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return 'Must be a JSON object ({...}), not ' + (Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'null' : 'a ' + typeof value) + '.';
    }
    return '';
  }

  function errorElement(field) {
    return document.getElementById(field.id + '-error');
  }

  function check(field) {
    var problem = jsonProblem(field.value);
    var out = errorElement(field);
    if (out) { out.textContent = problem; }
    if (problem) {
      field.setAttribute('aria-invalid', 'true');
    } else {
      field.removeAttribute('aria-invalid');
    }
    return problem;
  }

  document.querySelectorAll('textarea[data-json]').forEach(function (field) {
    field.addEventListener('input', function () {
      if (field.getAttribute('aria-invalid') === 'true') { check(field); }
    });
    field.addEventListener('blur', function () { check(field); });
    field.form.addEventListener('submit', function (event) {
      if (check(field)) {
        event.preventDefault();
        field.focus();
      }
    });
  });

  // Required fields of the send form: say which is missing, next to it.
  document.querySelectorAll('form[data-send-form]').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      var missing = Array.prototype.filter.call(form.querySelectorAll('[required]'), function (f) {
        return !f.value.trim();
      });
      if (missing.length) {
        event.preventDefault();
        missing.forEach(function (f) { f.setAttribute('aria-invalid', 'true'); });
        var box = document.getElementById('send-errors');
        if (box) {
          box.hidden = false;
          box.innerHTML = '';
          var p = document.createElement('p');
          p.textContent = 'Not sent — please fill in: ' + missing.map(function (f) {
            var label = form.querySelector('label[for="' + f.id + '"]');
            return label ? label.textContent : f.name;
          }).join(', ');
          box.appendChild(p);
        }
        missing[0].focus();
      }
    });
  });

  // --- person search boxes: <input data-person-search="/console/search/people" list=...> -------
  function debounce(fn, ms) {
    var timer = null;
    return function () {
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(fn, ms);
    };
  }

  document.querySelectorAll('input[data-person-search]').forEach(function (input) {
    var options = document.getElementById(input.getAttribute('list'));
    var found = document.getElementById(input.id + '-found');
    var asked = 0;
    input.addEventListener('input', debounce(function () {
      var q = input.value.trim();
      var ticket = ++asked;
      fetch(input.getAttribute('data-person-search') + '?q=' + encodeURIComponent(q),
            {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
        .then(function (response) { return response.ok ? response.json() : {customers: []}; })
        .then(function (answer) {
          if (ticket !== asked) { return; } // a later search is on its way
          options.innerHTML = '';
          answer.customers.forEach(function (person) {
            var option = document.createElement('option');
            option.value = person.id;
            if (person.email) { option.label = person.email; }
            options.appendChild(option);
          });
          if (found) {
            found.textContent = q ? (answer.customers.length ? answer.customers.length +
              ' matching ' + (answer.customers.length === 1 ? 'person' : 'people') :
              'No person matches “' + q + '”.') : '';
          }
        })
        .catch(function () { /* suggestions are a convenience: typing still works */ });
    }, 250));
  });

  // --- segment preview: <div data-segment-preview="/console/segments/preview"> -----------------
  var preview = document.querySelector('[data-segment-preview]');
  var definition = document.getElementById('definition');
  if (preview && definition) {
    var previewStatus = preview.querySelector('[data-preview-status]');
    var sample = preview.querySelector('[data-preview-sample]');
    var previewAsked = 0;
    var showPreview = function () {
      if (jsonProblem(definition.value)) {
        previewStatus.textContent = 'Preview waits for a valid JSON object.';
        preview.setAttribute('data-state', 'invalid');
        sample.innerHTML = '';
        return;
      }
      var ticket = ++previewAsked;
      preview.setAttribute('data-state', 'loading');
      fetch(preview.getAttribute('data-segment-preview'), {
        method: 'POST', credentials: 'same-origin', body: definition.value,
        headers: {'Content-Type': 'application/json', 'Accept': 'application/json'}
      }).then(function (response) { return response.json(); }).then(function (answer) {
        if (ticket !== previewAsked) { return; }
        sample.innerHTML = '';
        if (answer.errors) {
          previewStatus.textContent = 'Not a valid definition: ' + answer.errors.join('; ');
          preview.setAttribute('data-state', 'invalid');
          return;
        }
        var n = answer.count;
        previewStatus.textContent = 'Would match ' + n.toLocaleString('en-US') +
          (n === 1 ? ' person' : ' people') + ' now' + (answer.complete ? '.' :
          ' among the first ' + answer.scanned.toLocaleString('en-US') +
          ' people looked at (the preview is bounded; the saved segment counts everyone).') +
          (answer.sample.length ? ' For example:' : '');
        preview.setAttribute('data-state', 'ready');
        preview.setAttribute('data-count', String(n));
        answer.sample.forEach(function (person) {
          var li = el('li');
          var a = el('a', '', person);
          a.href = '/console/people/' + encodeURIComponent(person);
          li.appendChild(a);
          sample.appendChild(li);
        });
      }).catch(function () {
        if (ticket === previewAsked) { previewStatus.textContent = 'Preview unavailable.'; }
      });
    };
    definition.addEventListener('input', debounce(showPreview, 400));
    showPreview();
  }

  // --- confirmations: <form data-confirm="..."> ------------------------------------------------
  document.querySelectorAll('form[data-confirm]').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      if (!window.confirm(form.getAttribute('data-confirm'))) { event.preventDefault(); }
    });
  });

  // --- live segment feed: <ol data-feed="/console/segments/feed?..."> --------------------------
  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function utc(seconds) {
    var d = new Date(seconds * 1000);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' +
      pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds()) + ' UTC';
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function describeCause(cause) {
    if (!cause) { return ''; }
    if (cause.indexOf('definition:') === 0) { return 'definition saved'; }
    if (cause.indexOf('timer:') === 0) { return 'time window passed'; }
    if (cause.indexOf('merge') === 0 || cause.indexOf('delete') === 0) { return cause; }
    return 'caused by ' + cause;  // the id of the event or identify that changed it
  }

  var list = document.querySelector('[data-feed]');
  if (list && window.EventSource) {
    var status = document.querySelector('[data-feed-status]');
    var MAX_ITEMS = 100;
    var seen = {};
    var source = null;
    var refusals = 0;
    var gone = false;
    var showChange = function (message) {
      var change;
      try { change = JSON.parse(message.data); } catch (e) { return; }
      if (seen[change.change_id]) { return; } // a change redelivered after a worker restart
      seen[change.change_id] = true;
      var item = el('li');
      item.setAttribute('data-change', change.change);
      var when = el('time', '', utc(change.at));
      when.setAttribute('datetime', new Date(change.at * 1000).toISOString());
      item.appendChild(when);
      var who = el('a', '', change.person_id);
      who.href = '/console/people/' + encodeURIComponent(change.person_id);
      item.appendChild(who);
      item.appendChild(el('span', change.change === 'entered' ? 'entered' : 'exited',
                          change.change));
      var seg = el('a', '', change.segment_id);
      seg.href = '/console/segments/' + encodeURIComponent(change.segment_id);
      item.appendChild(seg);
      item.appendChild(el('span', 'cause', describeCause(change.cause)));
      list.insertBefore(item, list.firstChild);
      while (list.children.length > MAX_ITEMS) { list.removeChild(list.lastChild); }
      document.querySelectorAll('[data-members-list]').forEach(function (members) {
        if (members.getAttribute('data-members-list') !== change.segment_id) { return; }
        var existing = Array.prototype.filter.call(members.children, function (li) {
          return li.getAttribute('data-person') === change.person_id;
        });
        if (change.change === 'entered' && !existing.length &&
            members.hasAttribute('data-complete')) {
          var li = el('li');
          li.setAttribute('data-person', change.person_id);
          var a = el('a', '', change.person_id);
          a.href = '/console/people/' + encodeURIComponent(change.person_id);
          li.appendChild(a);
          members.appendChild(li);
        } else if (change.change !== 'entered') {
          existing.forEach(function (li) { members.removeChild(li); });
        }
        var none = members.parentNode.querySelector('[data-members-empty]');
        if (none) { none.hidden = members.children.length > 0; }
      });
      document.querySelectorAll('[data-members-for]').forEach(function (count) {
        if (count.getAttribute('data-members-for') === change.segment_id) {
          var n = parseInt(count.textContent.replace(/[^0-9]/g, ''), 10) || 0;
          n = Math.max(0, n + (change.change === 'entered' ? 1 : -1));
          count.textContent = n.toLocaleString('en-US');
        }
      });
    };
    var connect = function () {
      if (gone) { return; }
      source = new EventSource(list.getAttribute('data-feed'));
      source.addEventListener('ready', function () {
        refusals = 0;
        status.textContent = 'Live — waiting for changes.';
        status.classList.add('live');
        status.setAttribute('data-state', 'live');
      });
      source.addEventListener('change', showChange);
      source.addEventListener('error', function () {
        status.classList.remove('live');
        status.setAttribute('data-state', 'reconnecting');
        if (source.readyState !== EventSource.CLOSED) {
          status.textContent = 'Reconnecting…';  // the browser retries by itself
          return;
        }
        // Refused (too many feeds open, the worker stopping, signed out): the browser gives
        // up on an answer that is not a stream, so try again later, waiting longer each time.
        var wait = Math.min(60, 5 * Math.pow(2, refusals));
        refusals += 1;
        status.textContent = 'Live feed unavailable; trying again in ' + wait + ' s.';
        setTimeout(connect, wait * 1000);
      });
    };
    connect();
    window.addEventListener('pagehide', function () {
      gone = true;
      if (source) { source.close(); }
    });
  } else if (list) {
    var s = document.querySelector('[data-feed-status]');
    if (s) { s.textContent = 'This browser cannot show the live feed.'; }
  }
}());

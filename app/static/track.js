/*
 * eventide browser snippet — served at /js/track.js.
 *
 *   _cio.identify({id: "5", email: "ann@example.com", plan: "pro"})
 *   _cio.track("added_to_cart", {sku: "A-1", price: 23.45})
 *   _cio.page()                      // or _cio.page(url, data)
 *   _cio.reset()                     // forget the identified person (sign-out)
 *
 * Calls made before this file loads are queued by the embed stub (window._cio = [...]) and sent
 * in order once it loads. Until identify, events carry an anonymous id kept in a first-party
 * cookie (_eventide_aid); identify sends that anonymous id so the anonymous activity joins the
 * person, and later events are sent as that person (cookie _eventide_id).
 *
 * Each call returns a Promise of {ok, status, errors}. Every call gets a ULID, so a retry after a
 * network error is deduplicated by the server.
 */
(function (window, document) {
  'use strict';

  var previous = window._cio;
  if (previous && previous._eventide) {
    return; // loaded twice
  }

  var script = document.currentScript || document.getElementById('cio-tracker');
  var siteId = script ? script.getAttribute('data-site-id') : null;
  var endpoint = script && script.getAttribute('data-endpoint');
  var base = endpoint || (script && script.src ? new URL(script.src, window.location.href).origin : '');
  var ANON_COOKIE = '_eventide_aid';
  var ID_COOKIE = '_eventide_id';
  var COOKIE_DAYS = 365;
  var ENCODING = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split('; ') : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf('=');
      if (parts[i].slice(0, eq) === name) {
        try { return decodeURIComponent(parts[i].slice(eq + 1)); } catch (e) { return null; }
      }
    }
    return null;
  }

  function writeCookie(name, value, days) {
    document.cookie = name + '=' + encodeURIComponent(value) + '; Path=/; Max-Age=' +
      Math.round(days * 86400) + '; SameSite=Lax' +
      (window.location.protocol === 'https:' ? '; Secure' : '');
  }

  function ulid() {
    var time = Date.now();
    var out = '';
    for (var i = 0; i < 10; i++) {
      out = ENCODING.charAt(time % 32) + out;
      time = Math.floor(time / 32);
    }
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    for (var j = 0; j < 16; j++) {
      out += ENCODING.charAt(bytes[j] % 32);
    }
    return out;
  }

  function anonymousId() {
    var value = readCookie(ANON_COOKIE);
    if (!value) {
      value = 'anon-' + ulid().toLowerCase();
      writeCookie(ANON_COOKIE, value, COOKIE_DAYS);
    }
    return value;
  }

  function isObject(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  }

  function assign(target) {
    for (var i = 1; i < arguments.length; i++) {
      var source = arguments[i];
      if (isObject(source)) {
        for (var key in source) {
          if (Object.prototype.hasOwnProperty.call(source, key)) { target[key] = source[key]; }
        }
      }
    }
    return target;
  }

  function wait(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function post(path, body, attempt) {
    var url = base + '/api/v1/browser/' + encodeURIComponent(siteId) + '/' + path;
    return window.fetch(url, {
      method: 'POST',
      mode: 'cors',
      credentials: 'omit',
      keepalive: true,
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(body)
    }).then(function (response) {
      if ((response.status >= 500 || response.status === 429) && attempt < 3) {
        return wait(500 * attempt).then(function () { return post(path, body, attempt + 1); });
      }
      return response.json().catch(function () { return {}; }).then(function (answer) {
        var errors = (answer && answer.meta && answer.meta.errors) || [];
        if (!response.ok && window.console) {
          window.console.warn('eventide: ' + path + ' refused (' + response.status + '): ' +
                              errors.join('; '));
        }
        return {ok: response.ok, status: response.status, errors: errors};
      });
    }, function (error) {
      if (attempt < 3) {
        return wait(500 * attempt).then(function () { return post(path, body, attempt + 1); });
      }
      return {ok: false, status: 0, errors: [String(error)]};
    });
  }

  // One call at a time, in call order: an identify is sent after the events before it.
  var chain = Promise.resolve();
  function enqueue(path, build) {
    var result = chain.then(function () {
      var body = build();
      if (!body) {
        return {ok: false, status: 0, errors: ['not sent: invalid call']};
      }
      return post(path, body, 1);
    });
    chain = result.catch(function () {});
    return result;
  }

  function invalid(message) {
    if (window.console) { window.console.warn('eventide: ' + message); }
    return null;
  }

  function who(body) {
    var person = readCookie(ID_COOKIE);
    if (person) { body.customer_id = person; } else { body.anonymous_id = anonymousId(); }
    return body;
  }

  var api = {
    _eventide: true,

    identify: function (attributes) {
      return enqueue('identify', function () {
        if (!isObject(attributes) || (attributes.id == null && attributes.email == null)) {
          return invalid('identify needs an object with an id');
        }
        var id = attributes.id != null ? String(attributes.id) : String(attributes.email);
        var body = assign({}, attributes, {id: id, anonymous_id: anonymousId()});
        writeCookie(ID_COOKIE, id, COOKIE_DAYS);
        return body;
      });
    },

    track: function (name, data) {
      return enqueue('events', function () {
        if (typeof name !== 'string' || !name.replace(/\s+/g, '')) {
          return invalid('track needs an event name');
        }
        if (data != null && !isObject(data)) { return invalid('track data must be an object'); }
        return who({id: ulid(), name: name, data: data || {}});
      });
    },

    page: function (url, data) {
      if (isObject(url) && data === undefined) { data = url; url = undefined; }
      return enqueue('page', function () {
        if (data != null && !isObject(data)) { return invalid('page data must be an object'); }
        var pageData = assign({}, data);
        if (document.referrer && pageData.referrer === undefined) {
          pageData.referrer = document.referrer;
        }
        return who({id: ulid(), url: String(url || window.location.href), data: pageData});
      });
    },

    reset: function () {
      writeCookie(ID_COOKIE, '', -1);
      writeCookie(ANON_COOKIE, '', -1);
      return chain;
    },

    anonymousId: anonymousId,

    push: function (call) {
      if (Array.isArray(call) && typeof api[call[0]] === 'function' && call[0] !== 'push') {
        return api[call[0]].apply(api, call.slice(1));
      }
      return undefined;
    }
  };

  if (!siteId) {
    invalid('no site id: add data-site-id="..." to the script tag (id="cio-tracker")');
  }
  window._cio = api;
  var queued = Array.isArray(previous) ? previous.slice() : [];
  for (var i = 0; i < queued.length; i++) { api.push(queued[i]); }
  if (script && script.getAttribute('data-auto-page') === 'true') { api.page(); }
})(window, document);

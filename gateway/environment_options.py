"""Command-line options that may also come from the environment.

Containers (compose files, Kubernetes manifests) set environment variables
more easily than command lines, so every long option ``--some-option`` of a
parser built on ``EnvironmentParser`` also reads ``GATEWAY_SOME_OPTION``:
the command line wins, then the variable, then the option's default. It is
done once here, for every option the parser has when it parses, so that an
option added later gets its variable without a line of its own; ``--help``
names each one. A variable's bad value is refused like a bad option, in one
line that names the variable.
"""

import argparse
import os

__all__ = ['EnvironmentParser', 'variable_for']

PREFIX = 'GATEWAY_'
_TRUE = ('1', 'true', 'yes', 'on')
_FALSE = ('0', 'false', 'no', 'off')


def variable_for(option):
    """``--max-requests`` -> ``GATEWAY_MAX_REQUESTS``."""
    return PREFIX + option.lstrip('-').upper().replace('-', '_')


class EnvironmentParser(argparse.ArgumentParser):
    """An ArgumentParser whose long options also read ``GATEWAY_<OPTION>``.

    ``add_argument(..., legacy_variable='NAME')`` names a variable the
    option read before this scheme existed; it is read after the new one.
    Repeatable options (``action='append'``) take several values separated
    by white space. Flags take 1/true/yes/on or 0/false/no/off.
    """

    environ = None      # where the variables are read: None for os.environ, as it is then

    def add_argument(self, *flags, legacy_variable=None, **kwargs):
        long_flags = [flag for flag in flags if flag.startswith('--')]
        if long_flags and kwargs.get('action') not in ('help', 'version'):
            names = [variable_for(long_flags[-1])] + ([legacy_variable] if legacy_variable else [])
            said = ' or '.join('$' + name for name in names)
            kwargs['help'] = (kwargs.get('help') or '').rstrip() + f' [{said}]'
            action = super().add_argument(*flags, **kwargs)
            action.environment_variables = names
            return action
        return super().add_argument(*flags, **kwargs)

    def error(self, message):
        # One line, not a usage dump: the interesting part is the message.
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')

    def parse_known_args(self, args=None, namespace=None):
        self.taken_from = {}        # dest -> (variable, the value it gave)
        environ = os.environ if self.environ is None else self.environ
        for action in self._actions:
            for name in getattr(action, 'environment_variables', ()):
                text = environ.get(name, '').strip()
                if text:
                    action.default = self._from_environment(action, name, text)
                    self.taken_from[action.dest] = (name, action.default)
                    break
        return super().parse_known_args(args, namespace)

    def source_of(self, dest, namespace):
        """Where the parsed value of *dest* came from, for an error message:
        its variable's name, or its option's."""
        name, value = self.taken_from.get(dest, (None, None))
        if name is not None and getattr(namespace, dest, None) is value:
            return name
        for action in self._actions:
            if action.dest == dest and action.option_strings:
                return action.option_strings[-1]
        return dest

    def _from_environment(self, action, name, text):
        """The option's value for the variable *name* set to *text*."""
        try:
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                if text.lower() not in _TRUE + _FALSE:
                    raise argparse.ArgumentTypeError(
                        f'{text!r} is neither on (1, true, yes, on) nor off (0, false, no, off)')
                on = text.lower() in _TRUE
                return on if isinstance(action, argparse._StoreTrueAction) else not on
            if isinstance(action, argparse._AppendAction):
                return [self._one_value(action, word) for word in text.split()]
            return self._one_value(action, text)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
            self.exit(2, f'{self.prog}: error: {name}={text!r}: {error}\n')

    @staticmethod
    def _one_value(action, text):
        value = action.type(text) if action.type is not None else text
        if action.choices is not None and value not in action.choices:
            choices = ', '.join(map(str, action.choices))
            raise argparse.ArgumentTypeError(f'{value!r} is not one of {choices}')
        return value
